"""An experiment -> its runs (method x seed), each in its own process, records kept safe.

A run whose record already holds a success for the same resolved config is not redone; a run
that crashes, is killed or interrupted leaves a failure record and the others go on.
"""

from __future__ import annotations

import dataclasses
import fcntl
import multiprocessing
import os
import re
import shutil
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from peftbench.checkpoints import remove_checkpoint
from peftbench.config import ExperimentConfig, MethodSpec, stable_hash, to_plain
from peftbench.data import PreparedData, carve_validation, prepare_data, save_prepared
from peftbench.errors import PeftbenchError
from peftbench.methods import get_method
from peftbench.models import check_4bit_available, load_tokenizer
from peftbench.results import (
    RUNS_DIR,
    RecordError,
    RunProgress,
    RunRecord,
    failure_record,
    load_records,
    read_record,
    record_file,
    write_json_atomic,
)
from peftbench.run_spec import RunSpec
from peftbench.train import run_worker

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
    handle = open(directory / LOCK_FILE, "w")  # noqa: SIM115 - held until the context ends
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise PeftbenchError(
            f"another peftbench run is using {directory}; wait for it to finish, or use "
            "another output_dir"
        ) from None
    try:
        handle.write(str(os.getpid()))
        handle.flush()
        yield
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


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
    )
    spec.config_hash = stable_hash({**spec.resolved_config(), "data": config.data, "role": role})
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
        record = read_record(record_file(spec.run_dir))
    except RecordError:
        return False
    return record["status"] == "success" and record["config_hash"] == spec.config_hash


def run_in_process(spec: RunSpec) -> None:
    """Run one spec in a fresh process; if it dies without a record, write one for it."""
    record_path = record_file(spec.run_dir)
    Path(spec.run_dir).mkdir(parents=True, exist_ok=True)
    started = time.time()
    process = multiprocessing.get_context("spawn").Process(target=run_worker, args=(spec,))
    process.start()
    try:
        process.join()
    except KeyboardInterrupt:
        # Ctrl-C reaches the worker too (same process group); SIGTERM reached only us, so
        # pass it on. Either way the worker records itself as canceled.
        process.join(timeout=5)
        if process.is_alive():
            process.terminate()
        process.join(timeout=60)
        if process.is_alive():
            process.kill()
            process.join()
        _record_if_missing(spec, record_path, started, "canceled", "Interrupted", "interrupted")
        raise
    _record_if_missing(
        spec,
        record_path,
        started,
        "failed",
        "ProcessDied",
        f"the run's process ended with exit code {process.exitcode} without writing a record "
        "(killed, out of memory, or a crash in native code)",
    )


def _record_if_missing(
    spec: RunSpec, record_path: Path, started: float, status: str, error_type: str, message: str
) -> None:
    if record_path.exists() and record_path.stat().st_mtime >= started:
        return
    progress = RunProgress(
        started_at=time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(started))
    )
    write_json_atomic(record_path, failure_record(spec, status, error_type, message, progress))


def write_summary(output_dir: Path, records: list[RunRecord]) -> str:
    """Write summary.md and summary.csv next to the runs; return the Markdown table."""
    from peftbench.report import write_summary as write_results_table

    return write_results_table(output_dir, records)


def check_resources(config: ExperimentConfig) -> None:
    """Say what the experiment will need; fail before any work when the disk is too small."""
    from peftbench.plan import count_method_parameters, estimate_resources

    needs = estimate_resources(config, count_method_parameters(config))
    free_mb = shutil.disk_usage(existing_ancestor(config.output_path)).free / 2**20
    print(
        f"needs about {needs['disk_mb']:,.0f} MB of disk (saved models and a checkpoint; "
        f"{free_mb:,.0f} MB free) and {needs['memory_mb']:,.0f} MB of memory for weights, "
        "gradients and optimiser state of the largest run, plus activations",
        flush=True,
    )
    if needs["disk_mb"] * 1.1 > free_mb:
        raise PeftbenchError(
            f"not enough disk in {config.output_path}: about {needs['disk_mb']:,.0f} MB needed, "
            f"{free_mb:,.0f} MB free; fix: free space, set training.keep_model: false, or "
            "choose another output_dir"
        )


def _interrupt_on_sigterm() -> None:
    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def run_experiment(config: ExperimentConfig, force: bool = False) -> ExperimentOutcome:
    """Prepare the data once, then do every run that is not already finished."""
    _interrupt_on_sigterm()
    output_dir = config.output_path
    if any(get_method(e.method).uses_4bit_base(e.params) for e in config.methods):
        check_4bit_available()
    # The data is read and checked before anything is written: bad data leaves no output.
    check_creatable(output_dir)
    check_resources(config)
    print(f"preparing data: {config.data.dataset}", flush=True)
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
        print(
            f"  train {info['train_size']} / test {info['test_size']} examples, "
            f"{info['num_labels']} classes, balance {info['label_balance']}",
            flush=True,
        )
        for warning in info["warnings"]:
            print(f"  data warning: {warning}", flush=True)

        runner = _Runner(config, force, data_cache, prepared)
        runner.run_all()
        records, skipped = load_records(output_dir)
        order = [spec.run_id for spec in runner.finals]
        records = sorted(
            (r for r in records if r["run_id"] in order), key=lambda r: order.index(r["run_id"])
        )
        table = write_summary(output_dir, records)
        report_files = write_report(output_dir)
    print("\n" + table, flush=True)
    if report_files:
        print(f"report: {', '.join(str(f) for f in report_files)}", flush=True)
    return ExperimentOutcome(records, skipped, runner.ran, runner.reused, runner.interrupted)


class _Runner:
    """Does an experiment's runs in order: each method's search (if any), then its seeds."""

    def __init__(
        self, config: ExperimentConfig, force: bool, data_cache: Path, prepared: PreparedData
    ) -> None:
        self.config, self.force = config, force
        self.data_cache, self.prepared = data_cache, prepared
        self.ran: list[str] = []
        self.reused: list[str] = []
        self.finals: list[RunSpec] = []
        self.interrupted = False
        self.total = sum(
            (len(e.grid()) if e.search else 0) + len(config.seeds) for e in config.methods
        )
        self.number = 0

    def run_all(self) -> None:
        for entry in self.config.methods:
            params, search = entry.params, None
            if entry.search:
                params, search = self.search(entry)
                if self.interrupted:
                    return
            for seed in self.config.seeds:
                spec = make_spec(
                    self.config,
                    entry,
                    params,
                    seed,
                    f"{entry.label}-seed{seed}",
                    self.data_cache,
                    search=search,
                )
                self.finals.append(spec)
                if params is None:  # every search run failed: nothing to run with
                    self.number += 1
                    write_json_atomic(
                        record_file(spec.run_dir),
                        failure_record(
                            spec,
                            "failed",
                            "SearchFailed",
                            "every hyperparameter value tried in the search failed",
                            RunProgress(),
                        ),
                    )
                    continue
                if not self.execute(spec):
                    return

    def execute(self, spec: RunSpec) -> bool:
        """Do one run unless it is finished; False when interrupted."""
        self.number += 1
        prefix = f"[{self.number}/{self.total}] {spec.run_id}"
        if not self.force and finished(spec):
            print(f"{prefix}: finished earlier, kept", flush=True)
            self.reused.append(spec.run_id)
            return True
        if self.force:
            remove_checkpoint(Path(spec.run_dir))
        print(f"{prefix}: {spec.method}", flush=True)
        try:
            run_in_process(spec)
        except KeyboardInterrupt:
            print(f"interrupted during {spec.run_id}; run again to resume", flush=True)
            self.interrupted = True
            return False
        self.ran.append(spec.run_id)
        return True

    def search(self, entry: MethodSpec) -> tuple[Any, dict]:
        """Try every value of the grid on the validation split; return the best params."""
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
        tried = []
        for combo in entry.grid():
            spec = make_spec(
                config,
                entry,
                dataclasses.replace(entry.params, **combo),
                config.seeds[0],
                search_run_id(entry.label, combo),
                search_cache,
                role="search",
            )
            if not self.execute(spec):
                return None, {}
            try:
                record = read_record(record_file(spec.run_dir))
                accuracy = (
                    record["metrics"].get("accuracy") if record["status"] == "success" else None
                )
            except RecordError:
                accuracy = None
            tried.append({"values": combo, "run_id": spec.run_id, "validation_accuracy": accuracy})
        scored = [t for t in tried if t["validation_accuracy"] is not None]
        summary = {"grid": entry.search, "tried": tried, "selected_by": "validation accuracy"}
        if not scored:
            return None, {**summary, "chosen": None}
        best = max(scored, key=lambda t: t["validation_accuracy"])  # first of equals wins
        print(
            f"  search for {entry.label}: chose {best['values']} (validation accuracy "
            f"{100 * best['validation_accuracy']:.2f}%)",
            flush=True,
        )
        return dataclasses.replace(entry.params, **best["values"]), {
            **summary,
            "chosen": best["values"],
        }


def write_report(output_dir: Path) -> list[Path]:
    """The full report (tables, plots, recommendations) of a finished experiment."""
    from peftbench.report import build_report

    try:
        return build_report([output_dir], output_dir).files
    except PeftbenchError as exc:  # e.g. every run failed: the records still say why
        print(f"no report: {exc}", flush=True)
        return []
