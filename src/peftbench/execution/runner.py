"""An experiment -> its runs (method x seed), on a backend, records kept safe.

The data is prepared once; the scheduler (schedule.py) decides what runs and what is already
finished; a backend executes the runs: here one at a time (local.py) or as Ray tasks
(ray_backend.py). A run that crashes, is killed or interrupted leaves a failure record and the
others go on.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import yaml
from filelock import FileLock, Timeout

from peftbench import tracking
from peftbench.config import ExperimentConfig, to_plain
from peftbench.data import prepare_data
from peftbench.errors import PeftbenchError
from peftbench.execution.local import LocalBackend
from peftbench.execution.schedule import Backend, Scheduler
from peftbench.interrupts import sigterm_as_interrupt
from peftbench.logs import LOG
from peftbench.memory import MIB
from peftbench.models import load_tokenizer
from peftbench.preflight import check_kept_precision, check_machine
from peftbench.results import RunRecord, load_records

LOCK_FILE = ".peftbench.lock"


@dataclass
class ExperimentOutcome:
    records: list[RunRecord]
    skipped_records: list[str]  # unreadable records, with the reason
    ran: list[str]  # run ids done in this invocation
    reused: list[str]  # run ids whose finished record was kept
    interrupted: bool

    @property
    def all_succeeded(self) -> bool:
        return not self.interrupted and all(r["status"] == "success" for r in self.records)


def check_writable(directory: Path) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / ".peftbench-write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise PeftbenchError(
            f"output directory {directory} cannot be written ({exc.strerror}); "
            "fix: choose another with output_dir=PATH"
        ) from exc


def existing_ancestor(path: Path) -> Path:
    """`path` itself if it exists, else its nearest ancestor that does."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_creatable(directory: Path) -> None:
    """Fail early, creating nothing, when `directory` could not be made: its nearest existing
    ancestor is not a writable folder."""
    ancestor = existing_ancestor(directory)
    if not ancestor.is_dir() or not os.access(ancestor, os.W_OK | os.X_OK):
        raise PeftbenchError(
            f"output directory {directory} cannot be written ({ancestor} is not a writable "
            "folder); fix: choose another with output_dir=PATH"
        )


@contextmanager
def experiment_lock(directory: Path) -> Iterator[None]:
    """Hold an exclusive lock on the output directory for the whole experiment."""
    lock = FileLock(directory / LOCK_FILE)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise PeftbenchError(
            f"another peftbench run is using {directory}; wait for it to finish, or use "
            "another output_dir"
        ) from None
    try:
        yield
    finally:
        lock.release()


def write_summary(output_dir: Path, records: list[RunRecord]) -> str:
    """Write summary.md and summary.csv next to the runs; return the Markdown table."""
    from peftbench.report import write_summary as write_results_table

    return write_results_table(output_dir, records)


def check_resources(config: ExperimentConfig) -> None:
    """Say what the experiment will need; fail before any work when the disk is too small."""
    from peftbench.plan import count_method_parameters, estimate_resources

    needs = estimate_resources(config, count_method_parameters(config))
    free_mb = shutil.disk_usage(existing_ancestor(config.output_path)).free / MIB
    LOG.info(
        f"needs about {needs['disk_mb']:,.0f} MiB of disk (saved models and a checkpoint; "
        f"{free_mb:,.0f} MiB free) and {needs['memory_mb']:,.0f} MiB of memory for weights, "
        "gradients and optimiser state of the largest run, plus activations",
    )
    if needs["disk_mb"] * 1.1 > free_mb:
        raise PeftbenchError(
            f"not enough disk in {config.output_path}: about {needs['disk_mb']:,.0f} MiB needed, "
            f"{free_mb:,.0f} MiB free; fix: free space, set training.keep_model: false, or "
            "choose another output_dir"
        )


def run_experiment(config: ExperimentConfig, force: bool = False) -> ExperimentOutcome:
    """Prepare the data once, then do every run that is not already finished."""
    check_machine(config)  # device, precision, trackers, 4-bit: before Ray or any file
    if not force:  # --force redoes every run, kept ones included
        check_kept_precision(config)
    # SIGTERM stops the experiment like Ctrl-C; the caller's handlers are back afterwards.
    with sigterm_as_interrupt() as interrupts:
        # Ray is reached (and its resources checked) before anything is written.
        backend = connect_backend(config)
        # ray.init installs its own SIGTERM handler (a plain exit), which would skip recording
        # the running runs as canceled.
        interrupts.renew()
        try:
            return _run_with(backend, config, force)
        finally:
            close = getattr(backend, "close", None)
            if close is not None:
                close()


def connect_backend(config: ExperimentConfig) -> Backend:
    if config.execution.backend == "ray":
        from peftbench.execution.ray_backend import RayBackend

        return RayBackend.connect(config)
    return LocalBackend()


def _run_with(backend: Backend, config: ExperimentConfig, force: bool) -> ExperimentOutcome:
    output_dir = config.output_path
    # The data is read and checked before anything is written: bad data leaves no output.
    check_creatable(output_dir)
    check_resources(config)
    LOG.info(f"preparing data: {config.data.dataset}")
    tokenizer = load_tokenizer(config.model)
    tokenizer_id = f"{config.model.tokenizer or config.model.name}@{config.model.revision}"
    prepared, data_cache = prepare_data(
        config.data, tokenizer, tokenizer_id, config.training.max_length, output_dir / "cache"
    )
    check_writable(output_dir)
    with experiment_lock(output_dir):
        (output_dir / "experiment.yaml").write_text(
            yaml.safe_dump(to_plain(config), sort_keys=False), encoding="utf-8"
        )
        info = prepared.info
        LOG.info(
            f"  train {info['train_size']} / test {info['test_size']} examples, "
            f"{info['num_labels']} classes, balance {info['label_balance']}",
        )
        for warning in info["warnings"]:
            LOG.info(f"  data warning: {warning}")

        tracking.prepare_stores(config)
        scheduler = Scheduler(config, force, data_cache, prepared, backend)
        scheduler.run_all()
        records, skipped = load_records(output_dir)
        order = [spec.run_id for spec in scheduler.finals]
        records = sorted(
            (r for r in records if r["run_id"] in order), key=lambda r: order.index(r["run_id"])
        )
        table = write_summary(output_dir, records)
        report_files = write_report(output_dir)
        tracking.log_report(config, report_files)
    LOG.info("\n" + table)
    if report_files:
        LOG.info(f"report: {', '.join(str(f) for f in report_files)}")
    return ExperimentOutcome(
        records, skipped, scheduler.ran, scheduler.reused, scheduler.interrupted
    )


def write_report(output_dir: Path) -> list[Path]:
    """The full report (tables, plots, recommendations) of a finished experiment."""
    from peftbench.report import build_report

    try:
        return build_report([output_dir], output_dir).files
    except PeftbenchError as exc:  # e.g. every run failed: the records still say why
        LOG.info(f"no report: {exc}")
        return []
