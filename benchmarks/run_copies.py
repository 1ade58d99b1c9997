"""Committed copies of a benchmark's runs: what regenerates its report, and what lets a
benchmark longer than a session resume in a fresh checkout.

A copy holds each run's record.json and predictions.json (and the experiment.yaml, when
asked) under runs/<id>/, machine paths removed; no models, checkpoints or caches.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from peftbench.preflight import auto_precision_of
from peftbench.report.paths import scrub
from peftbench.results import PREDICTIONS_FILE, RECORD_FILE, RUNS_DIR

ROOT = Path(__file__).resolve().parent.parent


def copy_runs(
    output_dir: Path, copy_dir: Path, with_config: bool = False, only_successful: bool = False
) -> None:
    """Copy the runs under output_dir (those that succeeded, with `only_successful`; its
    experiment.yaml too, with `with_config`) to copy_dir, machine paths removed."""
    sources = [output_dir / "experiment.yaml"] if with_config else []
    for record in sorted(output_dir.glob(f"{RUNS_DIR}/*/{RECORD_FILE}")):
        status = json.loads(record.read_text(encoding="utf-8"))["status"]
        if status == "success" or not only_successful:
            sources += [record, record.with_name(PREDICTIONS_FILE)]
    for source in sources:
        if source.exists():
            target = copy_dir / source.relative_to(output_dir)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(scrub(source.read_text(encoding="utf-8"), ROOT), encoding="utf-8")


def restore_runs(copy_dir: Path, output_dir: Path, auto_precision: str | None = None) -> list[str]:
    """Copy back the runs of copy_dir that output_dir has no record of (the runner then
    treats those as finished, unless their config changed since). With `auto_precision` (what
    `precision: auto` resolves to here), a run whose `auto` computed in another precision is
    left out, to be redone here: the runner refuses to resume beside it. Returns those left out."""
    left_out = []
    for run_dir in sorted((copy_dir / RUNS_DIR).glob("*")):
        target = output_dir / RUNS_DIR / run_dir.name
        if (target / RECORD_FILE).exists():
            continue
        record = json.loads((run_dir / RECORD_FILE).read_text(encoding="utf-8"))
        computed = auto_precision_of(record)
        if auto_precision and computed not in (None, auto_precision):
            left_out.append(f"{run_dir.name} ({computed})")
            continue
        shutil.copytree(run_dir, target, dirs_exist_ok=True)
    return left_out
