"""Experiment trackers (MLflow, TensorBoard, W&B): each run logs where practitioners look.

`tracking.report_to` picks the trackers. Each run is a tracker run named after its run id, in
an experiment named after the config; a method's search trials are nested under one parent
run per method ("<label>-search"). Logged: the resolved config as params, the training loss
and learning rate per optimiser step, the evaluation metrics per epoch, the final metrics and
every measurement, and the record and predictions as artifacts; the report is logged at the
end of the experiment.

The records under output_dir stay the results: a tracker that fails (unreachable server,
unwritable store, missing package) is switched off for the rest of the run and its error is a
warning in the record (run_info.tracking.warnings), never a failed or lost run.

A run's process has one tracked run at a time, so train.py calls the module functions
(`log_step`, `log_epoch`) without carrying a handle; they do nothing when no trackers are on.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from peftbench.logs import LOG
from peftbench.tracking.base import RunIdentity, TrackerSafety, flatten_numbers

if TYPE_CHECKING:
    from peftbench.config import ExperimentConfig
    from peftbench.results import EpochMetrics

TENSORBOARD_DIR = "tensorboard"
MLFLOW_DB = "mlflow.db"
MLFLOW_ARTIFACTS = "mlflow-artifacts"


@dataclass(frozen=True)
class TrackingSettings:
    """tracking.report_to, resolved for one experiment (picklable: it travels to each run)."""

    report_to: tuple[str, ...] = ()
    experiment: str = ""
    output_dir: str = ""
    mlflow_uri: str | None = None
    # Where MLflow keeps artifacts when peftbench made the store (else the server decides).
    mlflow_artifacts: str | None = None
    tensorboard_dir: str = ""


def settings_for(config: ExperimentConfig) -> TrackingSettings:
    """The trackers of an experiment, with the default store and folders filled in."""
    import os

    tracking = config.tracking
    output = config.output_path.resolve()
    uri = tracking.mlflow_tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    artifacts = None
    if uri is None:
        uri = f"sqlite:///{output / MLFLOW_DB}"
        artifacts = (output / MLFLOW_ARTIFACTS).as_uri()
    return TrackingSettings(
        report_to=tuple(tracking.report_to),
        experiment=tracking.experiment_name or config.name,
        output_dir=str(output),
        mlflow_uri=uri,
        mlflow_artifacts=artifacts,
        tensorboard_dir=str(output / TENSORBOARD_DIR),
    )


@dataclass
class _Session:
    trackers: list[TrackerSafety] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    steps: list[tuple[int, dict[str, float]]] = field(default_factory=list)


_active: _Session | None = None
STEP_BATCH = 50  # per-step values are sent in batches of this many steps


def _open(name: str, settings: TrackingSettings, identity: RunIdentity) -> Any:
    if name == "mlflow":
        from peftbench.tracking.mlflow_tracker import MlflowTracker

        return MlflowTracker(settings, identity)
    if name == "tensorboard":
        from peftbench.tracking.tensorboard_tracker import TensorboardTracker

        return TensorboardTracker(settings, identity)
    from peftbench.tracking.wandb_tracker import WandbTracker

    return WandbTracker(settings, identity)


@contextmanager
def tracked_run(spec: Any, record_file: Path) -> Iterator[None]:
    """Open the trackers for one run; at its end log the record and note the outcome in it."""
    global _active
    settings: TrackingSettings | None = getattr(spec, "tracking", None)
    if settings is None or not settings.report_to:
        yield
        return
    identity = RunIdentity.of(spec)
    session = _Session()
    for name in settings.report_to:
        safety = TrackerSafety(name, session.info.setdefault("warnings", []))
        tracker = safety.call("start", partial(_open, name, settings, identity))
        if tracker is not None:
            safety.call("log params", partial(tracker.log_params, identity.params))
            session.trackers.append(safety)
    _active = session
    try:
        yield
    finally:
        _active = None
        _finish(session, record_file)


def log_step(step: int, loss: float, learning_rate: float) -> None:
    """The training loss and learning rate after optimiser step `step` (1-based, whole run)."""
    if _active is None:
        return
    _active.steps.append((step, {"train/loss": loss, "train/learning_rate": learning_rate}))
    if len(_active.steps) >= STEP_BATCH:
        _flush_steps(_active)


def log_epoch(epoch: EpochMetrics, step: int) -> None:
    """An epoch's evaluation metrics and times, at its last optimiser step `step` (on the step
    axis of the training loss, as Hugging Face's Trainer logs them), with the epoch number."""
    if _active is None:
        return
    _flush_steps(_active)
    values = {f"eval/{name}": value for name, value in epoch["eval"].items()}
    values["train/epoch"] = epoch["epoch"]
    values["train/epoch_loss"] = epoch["train_loss"]
    values["time/epoch_train_s"] = epoch["train_time_s"]
    values["time/epoch_eval_s"] = epoch["eval_time_s"]
    for safety in _active.trackers:
        safety.call("log epoch", partial(safety.tracker.log_metrics, values, step))


def _flush_steps(session: _Session) -> None:
    steps, session.steps = session.steps, []
    if steps:
        for safety in session.trackers:
            safety.call("log steps", partial(safety.tracker.log_step_metrics, steps))


def _finish(session: _Session, record_file: Path) -> None:
    """Final metrics, measurements and artifacts; then the record says where they went."""
    from peftbench.results import write_json_atomic

    _flush_steps(session)
    try:
        record = json.loads(record_file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        record = None  # the runner writes a record for a run that left none
    final: dict[str, float] = {}
    if record is not None:
        final = {
            **flatten_numbers(record.get("metrics", {}), "final/"),
            **flatten_numbers(record.get("measurements", {}), "measurements/"),
            **flatten_numbers(_train_totals(record.get("train_info", {})), "train_info/"),
        }
    artifacts = [p for p in (record_file, record_file.with_name("predictions.json")) if p.exists()]
    status = record.get("status", "failed") if record else "failed"
    for safety in session.trackers:
        tracker = safety.tracker
        if final:
            safety.call("log final metrics", partial(tracker.log_metrics, final, 0))
        for path in artifacts:
            safety.call(f"log {path.name}", partial(tracker.log_artifact, path))
        safety.finish(status)
        location = safety.call("location", tracker.location)
        if location is not None:
            session.info[safety.name] = location
    if record is not None:
        record.setdefault("run_info", {})["tracking"] = session.info
        write_json_atomic(record_file, record)


def prepare_stores(config: ExperimentConfig) -> None:
    """Create the trackers' stores once, in the driver, before the runs (each in its own
    process, several at once) open them, with the parent run of each method's search: two
    trials starting together would each make one. A tracker that fails here is only a
    warning: each run tries again and records its own warning."""
    settings = settings_for(config)
    if "mlflow" not in settings.report_to:
        return
    from peftbench.tracking.mlflow_tracker import prepare_store

    searches = [(f"{e.label}-search", e.label, e.method) for e in config.methods if e.search]
    try:
        prepare_store(settings, searches)
    except Exception as exc:  # noqa: BLE001 - a tracker never fails the study
        LOG.warning(f"MLflow store {settings.mlflow_uri} could not be prepared: {exc}")


def end_abandoned(spec: Any, since: float, status: str) -> None:
    """End the tracker runs that a run's process opened at or after `since` (epoch seconds)
    and left open because it died (killed, out of memory, its Ray worker or node lost): the
    runner calls this for such a run, so the tracker shows it ended (FAILED or KILLED) rather
    than RUNNING forever. Only MLflow keeps such a state; W&B marks a silent run "crashed"
    itself, and TensorBoard has none. A tracker that cannot be reached is only a warning."""
    settings: TrackingSettings | None = getattr(spec, "tracking", None)
    if settings is None or "mlflow" not in settings.report_to:
        return
    from peftbench.tracking.mlflow_tracker import end_abandoned_runs

    try:
        ended = end_abandoned_runs(settings, RunIdentity.of(spec).tags, since, status)
    except Exception as exc:  # noqa: BLE001 - a tracker never fails the study
        LOG.warning(f"{spec.run_id}: could not end its abandoned MLflow run: {exc}")
        return
    if ended:
        LOG.info(f"{spec.run_id}: ended its MLflow run left open by the lost process ({status})")


def _train_totals(train_info: dict[str, Any]) -> dict[str, Any]:
    """train_info without its per-epoch list (logged per epoch already)."""
    return {key: value for key, value in train_info.items() if key != "epochs"}


def log_report(config: ExperimentConfig, files: list[Path]) -> None:
    """The experiment's report files, as one more tracker run named "report"; then say
    where to look."""
    settings = settings_for(config)
    if not settings.report_to:
        return
    identity = RunIdentity.for_report(settings.experiment)
    report_dir = config.output_path.resolve()  # where write_report puts it
    for name in settings.report_to if files else ():
        safety = TrackerSafety(name, [])  # its warnings are logged as they happen
        tracker = safety.call("start", partial(_open, name, settings, identity))
        if tracker is None:
            continue
        for path in files:
            # Where it lies in the report's folder (plots/...), so that the report's links hold.
            folder = _folder_in(path, report_dir)
            safety.call(f"log {path.name}", partial(tracker.log_artifact, path, folder))
        safety.finish("success")
    if "mlflow" in settings.report_to:
        LOG.info(f"MLflow: mlflow ui --backend-store-uri {settings.mlflow_uri}")
    if "tensorboard" in settings.report_to:
        LOG.info(f"TensorBoard: tensorboard --logdir {settings.tensorboard_dir}")


def _folder_in(path: Path, root: Path) -> str:
    """The folder of `path` relative to `root` ("." for root itself or a path outside it)."""
    try:
        return path.resolve().parent.relative_to(root).as_posix()
    except ValueError:
        return "."
