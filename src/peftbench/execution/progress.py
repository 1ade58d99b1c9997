"""One line per run started and finished: status, accuracy, time, what is left, and an ETA."""

from __future__ import annotations

import time
from pathlib import Path

from peftbench.logs import LOG
from peftbench.results import RECORD_FILE, RecordError, read_record
from peftbench.run_spec import RunSpec


def format_duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


class Progress:
    """Counts runs done / running / pending and estimates the time left from finished runs."""

    def __init__(self, total: int, capacity: int) -> None:
        self.total, self.capacity = total, max(1, capacity)
        self.done = 0
        self.started_at: dict[str, float] = {}
        self.durations: list[float] = []

    def kept(self, spec: RunSpec) -> None:
        self.done += 1
        LOG.info(f"[{self.done}/{self.total}] {spec.run_id}: finished earlier, kept")

    def started(self, spec: RunSpec, running: int, pending: int) -> None:
        self.started_at[spec.run_id] = time.monotonic()
        LOG.info(
            f"started {spec.run_id} ({spec.method}) | running {running}, pending {pending}",
        )

    def finished(self, spec: RunSpec, running: int, pending: int) -> None:
        self.done += 1
        elapsed = time.monotonic() - self.started_at.pop(spec.run_id, time.monotonic())
        self.durations.append(elapsed)
        LOG.info(
            f"[{self.done}/{self.total}] {spec.run_id}: {_outcome(spec)}, "
            f"{format_duration(elapsed)} | done {self.done}, running {running}, "
            f"pending {pending}{self._eta()}",
        )

    def _eta(self) -> str:
        """Mean run time so far x runs left / runs at once (kept runs do not count)."""
        left = self.total - self.done
        if not left or not self.durations:
            return ""
        mean = sum(self.durations) / len(self.durations)
        return f", about {format_duration(mean * left / self.capacity)} left"


def _outcome(spec: RunSpec) -> str:
    try:
        record = read_record(Path(spec.run_dir) / RECORD_FILE)
    except RecordError as exc:
        return f"no record ({exc})"
    if record["status"] == "success":
        name = "validation" if record["run_info"].get("role") == "search" else "test"
        return f"success, {name} accuracy {100 * record['metrics']['accuracy']:.2f}%"
    error = record["error"] or {}
    return f"{record['status']} ({error.get('type')}: {str(error.get('message'))[:120]})"
