"""benchmarks/experiment.py end to end on tiny runs: a benchmark run, then --commit-only of
what a later session finds (everything finished, or a partial), each writing the result file,
the runs copy and the report as the committed results are written."""

from __future__ import annotations

import os
import shutil
import sys
from datetime import datetime, tzinfo
from pathlib import Path

import pytest
from conftest import REPO, tiny_config, write_config

from peftbench.results import RECORD_FILE, RUNS_DIR, read_record


@pytest.fixture(name="experiment")
def experiment_fixture(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """benchmarks/experiment.py with its results and run directories under tmp_path, its
    `peftbench run` on this checkout's code, and its clock at a fixed noon (a result file is
    named by the day: a test that ran past midnight would find two)."""
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    import experiment

    monkeypatch.setattr(experiment, "ROOT", tmp_path / "repo")
    monkeypatch.setattr(experiment, "RESULTS", tmp_path / "repo" / "benchmarks" / "results")
    monkeypatch.setattr(experiment, "datetime", _Noon)
    pythonpath = [str(REPO / "src"), os.environ.get("PYTHONPATH", "")]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(pythonpath))
    return experiment


class _Noon(datetime):
    @classmethod
    def now(cls, tz: tzinfo | None = None) -> datetime:
        return datetime(2026, 12, 3, 12, 0, tzinfo=tz)


def _benchmark(experiment, monkeypatch: pytest.MonkeyPatch, *arguments: str) -> int:
    monkeypatch.setattr(sys, "argv", ["benchmarks/experiment.py", *arguments])
    return experiment.main()


def test_a_benchmark_then_commit_only_of_all_and_of_part_of_it(
    experiment, tiny_roberta: Path, tiny_dataset: Path, tmp_path: Path, monkeypatch
) -> None:
    raw = tiny_config(tiny_roberta, tiny_dataset, tmp_path / "unused", seeds=[0, 1])
    raw["methods"] = {"lora": {"learning_rate": 5e-3}}
    raw["training"].update({"epochs": 1, "max_length": 32})
    raw["data"].update({"train_size": 64, "test_size": 32})
    config = str(write_config(raw, tmp_path / "tiny.yaml"))
    results = experiment.RESULTS
    output_dir = experiment.ROOT / "results" / "benchmark-tiny"

    assert _benchmark(experiment, monkeypatch, config, "--name", "tiny") == 0
    result = results / "tiny-2026-12-03.md"
    stem = result.stem
    text = result.read_text(encoding="utf-8")
    assert "exit code 0" in text and "2 final runs, 0 search runs" in text
    assert "--commit-only" not in text
    for seed in (0, 1):
        committed = read_record(
            results / f"{stem}-runs" / RUNS_DIR / f"lora-seed{seed}" / RECORD_FILE
        )
        assert committed["status"] == "success"
        assert f"- lora-seed{seed}: " in text
    assert (results / f"{stem}-report" / "report.md").exists()

    # A later session, a fresh checkout: nothing under results/ but what was committed.
    shutil.rmtree(output_dir)
    assert _benchmark(experiment, monkeypatch, config, "--name", "tiny", "--commit-only") == 0
    text = result.read_text(encoding="utf-8")
    assert "written with --commit-only from the records of earlier invocations: all 2" in text
    assert "--commit-only" not in text.split("- command: ")[1].splitlines()[0]
    assert (output_dir / RUNS_DIR / "lora-seed1" / RECORD_FILE).exists()  # restored

    # Only one of the two seeds finished (the committed copy gone too): a partial, exit 1.
    shutil.rmtree(output_dir / RUNS_DIR / "lora-seed1")
    shutil.rmtree(results / f"{stem}-runs")
    assert _benchmark(experiment, monkeypatch, config, "--name", "tiny", "--commit-only") == 1
    text = result.read_text(encoding="utf-8")
    assert "**partial**" in text and "1 final runs" in text
    assert "- lora-seed0: " in text and "lora-seed1" not in text
    assert sorted(p.name for p in (results / f"{stem}-runs" / RUNS_DIR).iterdir()) == ["lora-seed0"]
