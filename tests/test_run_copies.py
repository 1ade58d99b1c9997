"""benchmarks/run_copies.py: restoring a committed benchmark's runs into a fresh output
directory leaves out the runs whose `precision: auto` computed in another precision than it
does here, so a benchmark resumed on another kind of machine redoes them instead of mixing;
each run comes from the newest copy that has it in this machine's precision; and a result is
never replaced by one of the same day with fewer finished runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import REPO

from peftbench.results import RECORD_FILE, RUNS_DIR


def _committed_run(
    copy_dir: Path,
    run_id: str,
    chosen: str,
    computed: str,
    status: str = "success",
    role: str = "final",
) -> None:
    """A committed run's files: its record (only what restoring reads) and predictions."""
    run_dir = copy_dir / RUNS_DIR / run_id
    run_dir.mkdir(parents=True)
    record = {
        "run_id": run_id,
        "status": status,
        "run_info": {"config": {"training": {"precision": chosen}}, "role": role},
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
    assert restore_runs(copy_dir, here, auto_precision="fp32") == {"full-seed0": "bf16"}
    restored = sorted(p.parent.name for p in here.glob(f"{RUNS_DIR}/*/{RECORD_FILE}"))
    assert restored == ["ia3-seed0", "lora-seed0"]
    assert (here / RUNS_DIR / "lora-seed0" / "predictions.json").exists()

    # A run already here is never overwritten; without a precision, every other one comes back.
    kept = here / RUNS_DIR / "lora-seed0" / RECORD_FILE
    kept.write_text(kept.read_text().replace('"fp32"}}', '"fp32"}, "mine": 1}'))
    assert restore_runs(copy_dir, here) == {}
    assert (here / RUNS_DIR / "full-seed0" / RECORD_FILE).exists()
    assert '"mine": 1' in kept.read_text()


def _restored(output_dir: Path) -> dict[str, str]:
    records = output_dir.glob(f"{RUNS_DIR}/*/{RECORD_FILE}")
    return {p.parent.name: json.loads(p.read_text())["train_info"]["precision"] for p in records}


def test_each_run_comes_from_the_newest_copy_that_has_it_in_this_precision(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    from run_copies import auto_precisions, restore_from_copies

    older, newer = tmp_path / "older", tmp_path / "newer"  # e.g. a mixed study, then a rerun
    for run_id in ("full-seed0", "lora-seed0", "ia3-seed0"):
        _committed_run(older, run_id, "auto", "bf16")
    _committed_run(older, "qlora-seed0", "auto", "fp32")
    for run_id in ("full-seed0", "lora-seed0"):
        _committed_run(newer, run_id, "auto", "fp32")

    bf16_machine = tmp_path / "bf16"
    assert restore_from_copies([newer, older], bf16_machine, "bf16") == {"qlora-seed0": "fp32"}
    assert _restored(bf16_machine) == {
        "full-seed0": "bf16",
        "lora-seed0": "bf16",
        "ia3-seed0": "bf16",
    }
    assert auto_precisions(bf16_machine) == {"bf16"}

    fp32_machine = tmp_path / "fp32"
    assert restore_from_copies([newer, older], fp32_machine, "fp32") == {"ia3-seed0": "bf16"}
    assert _restored(fp32_machine) == {
        "full-seed0": "fp32",
        "lora-seed0": "fp32",
        "qlora-seed0": "fp32",
    }

    whole = tmp_path / "whole"  # no precision (--commit-only with nothing here): newest copy only
    assert restore_from_copies([newer, older], whole, None) == {}
    assert _restored(whole) == {"full-seed0": "fp32", "lora-seed0": "fp32"}
    assert restore_from_copies([], tmp_path / "none", "fp32") == {}


def test_a_result_is_not_replaced_by_one_of_the_same_day_with_fewer_finished_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    import experiment

    monkeypatch.setattr(experiment, "RESULTS", tmp_path / "results")
    committed = tmp_path / "results" / "study-2026-12-03-runs"
    for seed in (0, 1):
        _committed_run(committed, f"lora-seed{seed}", "auto", "bf16")
    _committed_run(committed, "lora-search-learning_rate=0.001", "auto", "bf16", role="search")

    here = tmp_path / "out"
    _committed_run(here, "lora-seed0", "auto", "fp32")
    _committed_run(here, "lora-seed1", "auto", "fp32", status="canceled")
    for run_id in ("a", "b"):  # search runs are not final runs
        _committed_run(here, f"lora-search-{run_id}", "auto", "fp32", role="search")
    why = experiment.replaces_a_fuller_result(here, "study-2026-12-03")
    assert why is not None and "holds 2 finished final runs" in why and "with 1" in why

    _committed_run(here, "lora-seed2", "auto", "fp32")
    assert experiment.replaces_a_fuller_result(here, "study-2026-12-03") is None
    assert experiment.replaces_a_fuller_result(here, "study-2026-12-04") is None  # nothing there
