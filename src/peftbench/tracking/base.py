"""What every tracker implements, who a tracked run is, and the guard that keeps runs safe.

A tracker is a class with these methods (each tracker module has one):

    __init__(settings, identity)       open or create the experiment and start the run
    log_params(params)                 {dotted name: value} of the resolved config
    log_step_metrics([(step, {name: value}), ...])
    log_metrics({name: value}, step)
    log_artifact(path, folder)         a file, kept in `folder` of the run's artifacts ("." = top)
    finish(status)                     "success" | "failed" | "canceled"
    location() -> dict                 where to find the run (recorded in the record)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from peftbench.logs import LOG
from peftbench.results import finite_number


class Tracker(Protocol):
    def log_params(self, params: dict[str, Any]) -> None: ...
    def log_step_metrics(self, steps: list[tuple[int, dict[str, float]]]) -> None: ...
    def log_metrics(self, values: dict[str, float], step: int) -> None: ...
    def log_artifact(self, path: Any, folder: str = ".") -> None: ...
    def finish(self, status: str) -> None: ...
    def location(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class RunIdentity:
    """A tracked run: its name, the parent it nests under (search trials), tags and params."""

    run_name: str
    parent: str | None  # name of the parent run, e.g. "lora-search"; None = top level
    tags: dict[str, str] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, spec: Any) -> RunIdentity:
        tags = {
            "peftbench.run_id": spec.run_id,
            "peftbench.label": spec.label,
            "peftbench.method": spec.method,
            "peftbench.seed": str(spec.seed),
            "peftbench.role": spec.role,
            "peftbench.config_hash": spec.config_hash,
        }
        parent = f"{spec.label}-search" if spec.role == "search" else None
        return cls(spec.run_id, parent, tags, flatten(spec.resolved_config()))

    @classmethod
    def for_report(cls, experiment: str) -> RunIdentity:
        return cls("report", None, {"peftbench.role": "report", "peftbench.experiment": experiment})


def artifact_path(path: Any, folder: str) -> str:
    """A logged file's name inside its run's artifacts: "plots/accuracy.png", "record.json"."""
    name = Path(path).name
    return name if folder == "." else f"{folder}/{name}"


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """{"training": {"epochs": 3}} -> {"training.epochs": 3}; lists stay values."""
    if isinstance(value, dict):
        flat: dict[str, Any] = {}
        for key, item in value.items():
            flat.update(flatten(item, f"{prefix}{key}."))
        return flat
    return {prefix.rstrip("."): value}


def flatten_numbers(value: Any, prefix: str = "") -> dict[str, float]:
    """The finite numbers in a nested dict, as {"prefix/a/b": value}."""
    numbers: dict[str, float] = {}
    if isinstance(value, dict):
        for key, item in value.items():
            numbers.update(flatten_numbers(item, f"{prefix}{key}/"))
    elif finite_number(value) is not None:
        numbers[prefix.rstrip("/")] = float(value)
    return numbers


@dataclass
class TrackerSafety:
    """Calls into one tracker; the first error turns it off and becomes a warning (logged at
    once, and kept for the record)."""

    name: str
    warnings: list[str]
    tracker: Any = None
    failed: bool = False

    def call(self, action: str, do: Callable[[], Any]) -> Any:
        """do(), or None once this tracker has failed; the tracker of a successful "start"
        is kept as self.tracker."""
        if self.failed:
            return None
        try:
            result = do()
            if action == "start":
                self.tracker = result
            return result
        except Exception as exc:  # noqa: BLE001 - a tracker must never fail the run
            self.failed = True
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            warning = (
                f"{self.name} tracking stopped at '{action}': {type(exc).__name__}: "
                f"{message[:300]} (the run and its record are not affected)"
            )
            self.warnings.append(warning)
            LOG.warning(warning)  # now, not at the run's end: a killed run never gets there
            return None

    def finish(self, status: str) -> None:
        """End the tracker's run, even after an earlier call failed (so that MLflow does not
        show it RUNNING forever); a tracker that never started has nothing to end."""
        if self.tracker is None:
            return
        if not self.failed:
            self.call("finish", lambda: self.tracker.finish(status))
            return
        try:
            self.tracker.finish("failed")  # what it logged is incomplete
        except Exception:  # noqa: BLE001, S110 - its failure is already the warning
            pass
