"""benchmarks/run_copies.py: restoring a committed benchmark's runs into a fresh output
directory leaves out the runs whose `precision: auto` computed in another precision than it
does here, so a benchmark resumed on another kind of machine redoes them instead of mixing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import REPO

from peftbench.results import RECORD_FILE, RUNS_DIR


def _committed_run(copy_dir: Path, run_id: str, chosen: str, computed: str) -> None:
    """A committed run's files: its record (only what restoring reads) and predictions."""
    run_dir = copy_dir / RUNS_DIR / run_id
    run_dir.mkdir(parents=True)
    record = {
        "run_id": run_id,
        "status": "success",
        "run_info": {"config": {"training": {"precision": chosen}}},
        "train_info": {"precision": computed},
    }
    (run_dir / RECORD_FILE).write_text(json.dumps(record))
    (run_dir / "predictions.json").write_text("{}")


def test_restore_leaves_out_runs_whose_auto_precision_differs_from_here(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    from run_copies import restore_runs

    copy_dir = tmp_path / "committed"
    _committed_run(copy_dir, "full-seed0", "auto", "bf16")  # a CPU with AVX-512 BF16
    _committed_run(copy_dir, "lora-seed0", "auto", "fp32")  # a CPU without
    _committed_run(copy_dir, "ia3-seed0", "bf16", "bf16")  # chosen in the config: same anywhere

    here = tmp_path / "fp32-machine"
    assert restore_runs(copy_dir, here, auto_precision="fp32") == ["full-seed0 (bf16)"]
    restored = sorted(p.parent.name for p in here.glob(f"{RUNS_DIR}/*/{RECORD_FILE}"))
    assert restored == ["ia3-seed0", "lora-seed0"]
    assert (here / RUNS_DIR / "lora-seed0" / "predictions.json").exists()

    # A run already here is never overwritten; without a precision, every other one comes back.
    kept = here / RUNS_DIR / "lora-seed0" / RECORD_FILE
    kept.write_text(kept.read_text().replace('"fp32"}}', '"fp32"}, "mine": 1}'))
    assert restore_runs(copy_dir, here) == []
    assert (here / RUNS_DIR / "full-seed0" / RECORD_FILE).exists()
    assert '"mine": 1' in kept.read_text()
