"""Which runs an experiment needs, in what order, and which are already done.

The scheduler is the same for every backend: each method's search trials (if any) and the
seeds of methods without a search are ready at once; when a method's last trial finishes, its
seeds become ready with the best value. A backend runs as many ready runs at once as it can
(the local backend: one). A run whose record already holds a success for the same config is
kept, not redone.
"""

from __future__ import annotations

import dataclasses
import re
from collections import deque
from pathlib import Path
from typing import Any, Protocol

from peftbench import tracking
from peftbench.config import ExperimentConfig, MethodSpec, stable_hash
from peftbench.data import PreparedData, carve_validation, save_prepared
from peftbench.execution.progress import Progress
from peftbench.logs import LOG
from peftbench.results import (
    RECORD_FILE,
    RUNS_DIR,
    RecordError,
    RunProgress,
    failure_record,
    read_record,
    write_json_atomic,
)
from peftbench.run_spec import RunSpec


class Backend(Protocol):
    """Runs specs; each finished run has its record under the spec's output run directory."""

    capacity: int  # runs at once

    def start(self, spec: RunSpec, fresh: bool = False) -> None:
        """Start a run; `fresh` (--force): discard its checkpoints instead of resuming."""
        ...

    def wait(self) -> list[RunSpec]:
        """Block until at least one started run has finished and its record is written."""
        ...

    def cancel(self) -> list[RunSpec]:
        """Stop every running run and record it as canceled; return them."""
        ...

    def running(self) -> int: ...


def make_spec(
    config: ExperimentConfig,
    entry: MethodSpec,
    params: Any,
    seed: int,
    run_id: str,
    data_cache: Path,
    role: str = "final",
    search: dict | None = None,
) -> RunSpec:
    """A run, identified by a hash of everything that decides its result."""
    spec = RunSpec(
        run_id=run_id,
        label=entry.label,
        method=entry.method,
        params=params,
        seed=seed,
        experiment=config.name,
        config_hash="",
        model=config.model,
        training=config.training,
        data_cache=str(data_cache),
        run_dir=str(config.output_path / RUNS_DIR / run_id),
        role=role,
        search=search,
        tracking=tracking.settings_for(config),
    )
    hashed = {**spec.resolved_config(), "data": config.data, "role": role}
    workers = config.execution.workers_per_run
    if workers > 1:  # data-parallel training is a different computation: a different run
        hashed["workers_per_run"] = workers
    spec.config_hash = stable_hash(hashed)
    return spec


def search_run_id(label: str, combo: dict[str, Any]) -> str:
    """e.g. lora-search-learning_rate=0.001 (characters safe in a directory name)."""
    values = "-".join(
        f"{name}={value:g}" if isinstance(value, float) else f"{name}={value}"
        for name, value in combo.items()
    )
    return f"{label}-search-" + re.sub(r"[^A-Za-z0-9_.=+-]", "_", values)


def finished(spec: RunSpec) -> bool:
    """True when the run already has a successful record made from the same config."""
    try:
        record = read_record(Path(spec.run_dir) / RECORD_FILE)
    except RecordError:
        return False
    return record["status"] == "success" and record["config_hash"] == spec.config_hash


def validation_accuracy(spec: RunSpec) -> float | None:
    try:
        record = read_record(Path(spec.run_dir) / RECORD_FILE)
    except RecordError:
        return None
    return record["metrics"].get("accuracy") if record["status"] == "success" else None


@dataclasses.dataclass
class _Search:
    entry: MethodSpec
    trials: list[tuple[dict[str, Any], RunSpec]]
    left: int


class Scheduler:
    """Does an experiment's runs on a backend: searches, then each method's seeds."""

    def __init__(
        self,
        config: ExperimentConfig,
        force: bool,
        data_cache: Path,
        prepared: PreparedData,
        backend: Backend,
    ) -> None:
        self.config, self.force, self.backend = config, force, backend
        self.data_cache, self.prepared = data_cache, prepared
        self.ran: list[str] = []
        self.reused: list[str] = []
        self.finals: list[RunSpec] = []
        self.interrupted = False
        self.ready: deque[RunSpec] = deque()
        self.searches: dict[str, _Search] = {}  # run_id of a trial -> its method's search
        total = sum((len(e.grid()) if e.search else 0) + len(config.seeds) for e in config.methods)
        self.progress = Progress(total, backend.capacity)

    def run_all(self) -> None:
        for entry in self.config.methods:
            if entry.search:
                self._queue_search(entry)
            else:
                self._queue_seeds(entry, entry.params, None)
        try:
            while self.ready or self.backend.running():
                while self.ready and self.backend.running() < self.backend.capacity:
                    self._start(self.ready.popleft())
                if self.backend.running():
                    for spec in self.backend.wait():
                        self._finish(spec, ran=True)
        except KeyboardInterrupt:
            self.interrupted = True
            canceled = self.backend.cancel()
            pending = list(self.ready)
            self.ready.clear()
            for spec in pending:
                if not finished(spec):
                    _write_failure(spec, "canceled", "Interrupted", "canceled before it started")
            names = ", ".join(s.run_id for s in canceled + pending) or "none"
            LOG.info(f"interrupted; canceled: {names}; run again to resume")
        self.finals.sort(key=self._final_order)

    def _final_order(self, spec: RunSpec) -> tuple[int, int]:
        labels = [e.label for e in self.config.methods]
        return labels.index(spec.label), self.config.seeds.index(spec.seed)

    def _start(self, spec: RunSpec) -> None:
        if not self.force and finished(spec):
            self.progress.kept(spec)
            self.reused.append(spec.run_id)
            self._finish(spec, ran=False)
            return
        self.progress.started(spec, self.backend.running() + 1, len(self.ready))
        self.backend.start(spec, fresh=self.force)

    def _finish(self, spec: RunSpec, ran: bool) -> None:
        if ran:
            self.ran.append(spec.run_id)
            self.progress.finished(spec, self.backend.running(), len(self.ready))
        search = self.searches.pop(spec.run_id, None)
        if search is not None:
            search.left -= 1
            if search.left == 0:
                params, summary = self._choose(search)
                self._queue_seeds(search.entry, params, summary, first=True)

    def _queue_search(self, entry: MethodSpec) -> None:
        search_cache = self._search_cache()
        trials = []
        for combo in entry.grid():
            spec = make_spec(
                self.config,
                entry,
                dataclasses.replace(entry.params, **combo),
                self.config.seeds[0],
                search_run_id(entry.label, combo),
                search_cache,
                role="search",
            )
            trials.append((combo, spec))
        search = _Search(entry, trials, len(trials))
        for _, spec in trials:
            self.searches[spec.run_id] = search
            self.ready.append(spec)

    def _search_cache(self) -> Path:
        config = self.config
        search_cache = self.data_cache.with_name(
            f"{self.data_cache.stem}-validation-{config.data.validation_size:g}.pt"
        )
        if not search_cache.exists():
            save_prepared(
                carve_validation(
                    self.prepared, config.data.validation_size, config.data.subset_seed
                ),
                search_cache,
            )
        return search_cache

    def _queue_seeds(
        self, entry: MethodSpec, params: Any, search: dict | None, first: bool = False
    ) -> None:
        specs = [
            make_spec(
                self.config,
                entry,
                params,
                seed,
                f"{entry.label}-seed{seed}",
                self.data_cache,
                search=search,
            )
            for seed in self.config.seeds
        ]
        self.finals.extend(specs)
        if params is None:  # every search run failed: nothing to run with
            for spec in specs:
                message = "every hyperparameter value tried in the search failed"
                _write_failure(spec, "failed", "SearchFailed", message)
            return
        # A method's seeds go before runs not yet started: with one run at a time, each
        # method's search is followed by its seeds, as before.
        if first:
            self.ready.extendleft(reversed(specs))
        else:
            self.ready.extend(specs)

    def _choose(self, search: _Search) -> tuple[Any, dict]:
        """The best value of the grid by validation accuracy (the first of equals wins)."""
        entry = search.entry
        tried = [
            {
                "values": combo,
                "run_id": spec.run_id,
                "validation_accuracy": validation_accuracy(spec),
            }
            for combo, spec in search.trials
        ]
        scored = [t for t in tried if t["validation_accuracy"] is not None]
        summary = {"grid": entry.search, "tried": tried, "selected_by": "validation accuracy"}
        if not scored:
            return None, {**summary, "chosen": None}
        best = max(scored, key=lambda t: t["validation_accuracy"])
        LOG.info(
            f"  search for {entry.label}: chose {best['values']} (validation accuracy "
            f"{100 * best['validation_accuracy']:.2f}%)",
        )
        params = dataclasses.replace(entry.params, **best["values"])
        return params, {**summary, "chosen": best["values"]}


def _write_failure(spec: RunSpec, status: str, error_type: str, message: str) -> None:
    write_json_atomic(
        Path(spec.run_dir) / RECORD_FILE,
        failure_record(spec, status, error_type, message, RunProgress()),
    )
