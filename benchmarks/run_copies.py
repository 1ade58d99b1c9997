"""Committed copies of a benchmark's runs: what regenerates its report, and what lets a
benchmark longer than a session resume in a fresh checkout.

A copy holds each run's record.json and predictions.json (and the experiment.yaml, when
asked) under runs/<id>/, machine paths removed; no models, checkpoints or caches.

A benchmark that spans sessions on machines of two kinds (with and without AVX-512 BF16, where
`precision: auto` computes in bf16 or fp32) commits copies whose runs may differ in precision.
Resuming takes each run from the newest copy that has it in this machine's precision, so the
runs of one precision gather across copies whatever order the machines come in.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from peftbench.preflight import auto_precision_of
from peftbench.report.paths import scrub
from peftbench.report.runs import EXPERIMENT_FILE
from peftbench.results import PREDICTIONS_FILE, RECORD_FILE, RUNS_DIR

ROOT = Path(__file__).resolve().parent.parent


def copy_runs(
    output_dir: Path, copy_dir: Path, with_config: bool = False, only_successful: bool = False
) -> None:
    """Copy the runs under output_dir (those that succeeded, with `only_successful`; its
    experiment.yaml too, with `with_config`) to copy_dir, machine paths removed."""
    sources = [output_dir / EXPERIMENT_FILE] if with_config else []
    for record in sorted(output_dir.glob(f"{RUNS_DIR}/*/{RECORD_FILE}")):
        status = json.loads(record.read_text(encoding="utf-8"))["status"]
        if status == "success" or not only_successful:
            sources += [record, record.with_name(PREDICTIONS_FILE)]
    for source in sources:
        if source.exists():
            target = copy_dir / source.relative_to(output_dir)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(scrub(source.read_text(encoding="utf-8"), ROOT), encoding="utf-8")


def restore_runs(
    copy_dir: Path, output_dir: Path, auto_precision: str | None = None
) -> dict[str, str]:
    """Copy back the runs of copy_dir that output_dir has no record of (the runner then
    treats those as finished, unless their config changed since). With `auto_precision` (what
    `precision: auto` resolves to here), a run whose `auto` computed in another precision is
    left out, to be redone here: the runner refuses to resume beside it. Returns those left
    out: run id -> the precision they computed in."""
    left_out = {}
    for run_dir in sorted((copy_dir / RUNS_DIR).glob("*")):
        if _has_record(output_dir, run_dir.name):
            continue
        record = json.loads((run_dir / RECORD_FILE).read_text(encoding="utf-8"))
        computed = auto_precision_of(record)
        if auto_precision and computed not in (None, auto_precision):
            left_out[run_dir.name] = computed
            continue
        shutil.copytree(run_dir, output_dir / RUNS_DIR / run_dir.name, dirs_exist_ok=True)
    return left_out


def restore_from_copies(
    copies: list[Path], output_dir: Path, auto_precision: str | None
) -> dict[str, str]:
    """Copy back into output_dir, from `copies` (newest first), each run it lacks: from the
    newest copy that has it in `auto_precision` (what `precision: auto` resolves to here).
    Without a precision, only the newest copy is read, whole (its runs may mix precisions, as
    it was committed). Returns the runs no copy had in this precision: run id -> the precision
    the newest copy had it in. The newest copy's experiment.yaml comes back too, when
    output_dir has none: a later copy made from output_dir must hold it (it says how many
    final runs the experiment has, and the report's method order); a run rewrites it."""
    _restore_config(copies, output_dir)
    if auto_precision is None:
        return restore_runs(copies[0], output_dir) if copies else {}
    left_out: dict[str, str] = {}
    for copy_dir in copies:
        for run_id, computed in restore_runs(copy_dir, output_dir, auto_precision).items():
            left_out.setdefault(run_id, computed)
    return {
        run_id: computed
        for run_id, computed in left_out.items()
        if not _has_record(output_dir, run_id)
    }


def _restore_config(copies: list[Path], output_dir: Path) -> None:
    if not copies or (output_dir / EXPERIMENT_FILE).exists():
        return
    if (copies[0] / EXPERIMENT_FILE).exists():
        output_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(copies[0] / EXPERIMENT_FILE, output_dir / EXPERIMENT_FILE)


def records_in(output_dir: Path) -> list[dict]:
    """The records under output_dir as written (not checked: a copy may hold older ones)."""
    return [
        json.loads(record_file.read_text(encoding="utf-8"))
        for record_file in sorted(output_dir.glob(f"{RUNS_DIR}/*/{RECORD_FILE}"))
    ]


def auto_precisions(output_dir: Path) -> set[str]:
    """The precisions the runs under output_dir computed in where their config said `auto`."""
    return {p for record in records_in(output_dir) if (p := auto_precision_of(record)) is not None}


def is_final(record: dict) -> bool:
    """A final run (seeded, reported), not a search run."""
    return record.get("run_info", {}).get("role", "final") == "final"


def finished_finals(records: list[dict]) -> int:
    """How many of these records are final runs that succeeded."""
    return sum(is_final(record) and record.get("status") == "success" for record in records)


def _has_record(output_dir: Path, run_id: str) -> bool:
    return (output_dir / RUNS_DIR / run_id / RECORD_FILE).exists()
