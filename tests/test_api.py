"""The Python API end to end, in-process, as a notebook would use it."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, tiny_config, write_config

import peftbench
from peftbench.results import read_record


def test_import_peftbench_stays_light() -> None:
    code = (
        "import sys, peftbench; "
        "print(sorted(m for m in ('torch', 'transformers', 'peft') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(REPO / "src"), "PATH": ""},
        check=True,
    )
    assert result.stdout.strip() == "[]"


def test_load_plan_run_report_in_process(
    tiny_roberta: Path, tiny_dataset: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    raw = tiny_config(tiny_roberta, tiny_dataset, out)
    path = write_config(raw, tmp_path / "exp.yaml")

    from_file = peftbench.load_config(path, ["training.epochs=1"], methods=["ia3", "lora"])
    config = peftbench.load_config(
        raw,
        {"training.epochs": 1, "data.train_size": 32, "methods.lora.r": 4},
        methods=["lora"],
        seeds=[7],
    )
    assert [m.label for m in from_file.methods] == ["lora", "ia3"]
    assert from_file.training.epochs == 1
    assert [m.label for m in config.methods] == ["lora"] and config.seeds == [7]
    assert config.methods[0].params.r == 4
    assert raw["training"]["epochs"] == 2  # the caller's dict is left as it was

    plan = peftbench.plan(config)
    (row,) = plan.methods
    assert row["label"] == "lora" and 0 < row["trainable_params"] < row["total_params"]
    assert plan.resources["memory_mb"] > 0
    assert "lora" in plan.text

    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    outcome = peftbench.run(config)
    assert {sig: signal.getsignal(sig) for sig in handlers} == handlers
    (record,) = outcome.records
    assert record["run_id"] == "lora-seed7" and record["status"] == "success"
    assert record == read_record(out / "runs" / "lora-seed7" / "record.json")
    assert outcome.ran == ["lora-seed7"] and outcome.all_succeeded
    assert peftbench.run(config).reused == ["lora-seed7"]

    report = peftbench.report([out], out=tmp_path / "report", formats=["md"])
    assert tmp_path / "report" / "report.md" in report.files
    assert "lora-seed7" in (tmp_path / "report" / "report.md").read_text()


def test_bad_input_raises_the_error_the_cli_prints(tmp_path: Path) -> None:
    with pytest.raises(peftbench.PeftbenchError, match="num_train_epochs.*'epochs'"):
        peftbench.load_config(
            {
                "name": "x",
                "model": {"name": "m"},
                "data": {"dataset": "d"},
                "methods": {"lora": {}},
            },
            {"training.num_train_epochs": 1},
        )
    with pytest.raises(peftbench.PeftbenchError, match="expected a path or a dict"):
        peftbench.load_config(42)  # type: ignore[arg-type]
