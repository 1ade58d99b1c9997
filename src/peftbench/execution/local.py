"""The default backend: one run at a time on this machine, each in a fresh process.

A fresh process per run keeps each run's peak memory its own, and a crash (or an
out-of-memory kill) takes only that run: if the process dies without a record, one saying
so is written for it.
"""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

from peftbench import tracking
from peftbench.checkpoints import remove_checkpoint
from peftbench.results import RECORD_FILE, RunProgress, failure_record, write_json_atomic
from peftbench.run_spec import RunSpec
from peftbench.train import run_worker


class LocalBackend:
    capacity = 1

    def __init__(self) -> None:
        self.current: tuple[RunSpec, multiprocessing.Process, float] | None = None

    def running(self) -> int:
        return int(self.current is not None)

    def start(self, spec: RunSpec, fresh: bool = False) -> None:
        Path(spec.run_dir).mkdir(parents=True, exist_ok=True)
        if fresh:
            remove_checkpoint(Path(spec.run_dir))
        process = multiprocessing.get_context("spawn").Process(target=run_worker, args=(spec,))
        self.current = (spec, process, time.time())
        process.start()

    def wait(self) -> list[RunSpec]:
        assert self.current is not None
        spec, process, started = self.current
        process.join()
        self.current = None
        record_if_missing(
            spec,
            started,
            "failed",
            "ProcessDied",
            f"the run's process ended with exit code {process.exitcode} without writing a "
            "record (killed, out of memory, or a crash in native code)",
        )
        return [spec]

    def cancel(self) -> list[RunSpec]:
        """Ctrl-C reaches the worker too (same process group); SIGTERM reached only us, so
        pass it on. Either way the worker records itself as canceled."""
        if self.current is None:
            return []
        spec, process, started = self.current
        self.current = None
        process.join(timeout=5)
        if process.is_alive():
            process.terminate()
        process.join(timeout=60)
        if process.is_alive():
            process.kill()
            process.join()
        record_if_missing(spec, started, "canceled", "Interrupted", "interrupted")
        return [spec]


def record_if_missing(
    spec: RunSpec,
    started: float,
    status: str,
    error_type: str,
    message: str,
    progress: RunProgress | None = None,
) -> None:
    """Write a failure record for a run whose process ended without writing one."""
    record_file = Path(spec.run_dir) / RECORD_FILE
    if record_file.exists() and record_file.stat().st_mtime >= started:
        return
    progress = progress or RunProgress()
    progress.started_at = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(started))
    write_json_atomic(record_file, failure_record(spec, status, error_type, message, progress))
    tracking.end_abandoned(spec, started, status)
