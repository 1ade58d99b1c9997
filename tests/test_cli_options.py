"""The command line as a practitioner meets it: --version, -q, --methods/--seeds, methods --json,
familiar names, refusals before any run, and a log file without carriage returns."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import REPO, tiny_config, write_config

import peftbench
from peftbench.cli import main
from peftbench.logs import LOG
from peftbench.progress import LineProgress


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    return subprocess.run(
        [sys.executable, "-m", "peftbench", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=600,
    )


def test_version_and_python_m(tmp_path: Path) -> None:
    result = _cli("--version", cwd=tmp_path)
    assert result.returncode == 0
    assert result.stdout.strip() == f"peftbench {peftbench.__version__}"


def test_methods_json_lists_every_setting_with_default_and_why(
    capsys: pytest.CaptureFixture,
) -> None:
    assert main(["methods", "--json"]) == 0
    methods = {m["name"]: m for m in json.loads(capsys.readouterr().out)}
    assert {"full", "lora", "qlora", "ia3"} <= set(methods)
    lora = {s["name"]: s for s in methods["lora"]["settings"]}
    assert lora["r"]["default"] == 8 and lora["r"]["type"] == "int"
    # null: the architecture's query and value projections (methods/targets.py)
    assert lora["target_modules"]["default"] is None
    assert "query and value" in lora["target_modules"]["help"]
    assert "LoRA paper" in lora["learning_rate"]["help"]
    assert methods["qlora"]["quantized_base"] is True


def test_method_help_is_the_fields_own_and_every_rate_says_why() -> None:
    """A method setting's help lives beside it, `setting(default, help=...)`, and is exactly what
    `peftbench methods` shows; every method says where its learning rate comes from."""
    from dataclasses import fields

    from peftbench.field_help import describe_methods
    from peftbench.methods import get_method
    from peftbench.structured import HELP

    for described in describe_methods():
        params_fields = {f.name: f for f in fields(get_method(described["name"]).params_class)}
        for entry in described["settings"]:
            assert HELP in params_fields[entry["name"]].metadata, (described["name"], entry)
            assert entry["help"] == params_fields[entry["name"]].metadata[HELP]
        rate = next(e for e in described["settings"] if e["name"] == "learning_rate")
        assert len(rate["help"]) > 20, described["name"]


@pytest.mark.parametrize(
    ("section", "theirs", "hint"),
    [
        ("lora", "lora_alpha", "peftbench calls 'lora_alpha' 'alpha'"),
        ("lora", "lora_dropout", "peftbench calls 'lora_dropout' 'dropout'"),
        ("training", "num_train_epochs", "peftbench calls 'num_train_epochs' 'epochs'"),
        (
            "training",
            "per_device_train_batch_size",
            "peftbench calls 'per_device_train_batch_size' 'train_batch_size'",
        ),
        ("training", "learning_rate", "'learning_rate' is set as methods.<label>.learning_rate"),
        ("training", "bf16", "'bf16' is set as training.precision: bf16"),
        ("training", "max_seq_length", "peftbench calls 'max_seq_length' 'max_length'"),
        ("lora", "learning_rte", "did you mean 'learning_rate'?"),  # a typo: the closest name
    ],
)
def test_familiar_names_are_answered_with_ours(
    section: str,
    theirs: str,
    hint: str,
    tiny_roberta: Path,
    tiny_dataset: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
) -> None:
    out = tmp_path / "out"
    raw = tiny_config(tiny_roberta, tiny_dataset, out)
    if section == "training":
        raw["training"][theirs] = 3
    else:
        raw["methods"][section][theirs] = 3
    assert main(["plan", str(write_config(raw, tmp_path / "exp.yaml"))]) == 2
    err = capsys.readouterr().err
    assert f"unknown field {theirs!r}" in err
    assert hint in err, err
    assert not out.exists()


def _refused(raw: dict, tmp_path: Path, capsys: pytest.CaptureFixture, *args: str) -> str:
    config = write_config(raw, tmp_path / "exp.yaml")
    assert main(["run", str(config), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("peftbench: error: ") and "Traceback" not in err
    assert not Path(raw["output_dir"]).exists(), "a refused config must write nothing"
    return err


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("methods.lora.learning_rate=-0.1", "methods.lora.learning_rate: must be a positive"),
        ("methods.lora.learning_rate=0", "methods.lora.learning_rate: must be a positive"),
        (
            "methods.lora.search={learning_rate: [1.0e-3, -1.0e-3]}",
            "methods.lora.learning_rate: must be a positive number, got -0.001",
        ),
        ("training.epochs=0", "training.epochs: must be a positive integer"),
        ("execution.max_retries=-1", "execution.max_retries: must be >= 0"),
        ("training.warmup_ratio=1.5", "training.warmup_ratio: must be in [0, 1)"),
        ("methods.lora.dropout=1.2", "dropout must be in [0, 1)"),
        ("tracking.report_to=[neptune]", "tracking.report_to[0]: got 'neptune'"),
    ],
)
def test_out_of_range_numbers_are_refused_before_any_run(
    override: str,
    message: str,
    tiny_roberta: Path,
    tiny_dataset: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
) -> None:
    raw = tiny_config(tiny_roberta, tiny_dataset, tmp_path / "out")
    assert message in _refused(raw, tmp_path, capsys, override)


def test_overrides_may_follow_the_options(
    tiny_roberta: Path, tiny_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """`run CONFIG --force a.b=c` applies the override (it is read, hence refused here)."""
    raw = tiny_config(tiny_roberta, tiny_dataset, tmp_path / "out")
    err = _refused(raw, tmp_path, capsys, "--force", "training.epochs=0")
    assert "training.epochs: must be a positive integer" in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_on_a_machine_without_it_is_refused(
    tiny_roberta: Path, tiny_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    raw = tiny_config(tiny_roberta, tiny_dataset, tmp_path / "out")
    raw["training"]["device"] = "cuda"
    err = _refused(raw, tmp_path, capsys)
    assert "training.device: cuda, but this machine has no CUDA device" in err


def test_a_4bit_method_without_bitsandbytes_is_refused(
    tiny_roberta: Path,
    tiny_dataset: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # None in sys.modules is Python's own "this package cannot be imported".
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)
    raw = tiny_config(tiny_roberta, tiny_dataset, tmp_path / "out")
    err = _refused(raw, tmp_path, capsys)
    assert "methods qlora need 4-bit weights from bitsandbytes, which is not installed" in err
    assert "pip install 'peftbench[qlora]'" in err


def test_a_tracker_that_is_not_installed_is_refused(
    tiny_roberta: Path,
    tiny_dataset: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "wandb", None)
    raw = tiny_config(tiny_roberta, tiny_dataset, tmp_path / "out")
    raw["tracking"] = {"report_to": ["wandb"]}
    err = _refused(raw, tmp_path, capsys)
    assert "tracking.report_to: wandb is not installed; fix: pip install 'peftbench[wandb]'" in err


def test_wandb_without_a_login_is_refused(
    tiny_roberta: Path,
    tiny_dataset: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pytest.importorskip("wandb")
    for name in ("WANDB_MODE", "WANDB_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    raw = tiny_config(tiny_roberta, tiny_dataset, tmp_path / "out")
    raw["tracking"] = {"report_to": ["tensorboard", "wandb"]}
    err = _refused(raw, tmp_path, capsys)
    assert "tracking.report_to: wandb has no login here" in err
    assert "WANDB_MODE=offline" in err


def test_methods_and_seeds_select_a_subset(
    tiny_roberta: Path, tiny_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    raw = tiny_config(tiny_roberta, tiny_dataset, tmp_path / "out")
    config = write_config(raw, tmp_path / "exp.yaml")
    assert main(["plan", str(config), "--methods", "ia3,lora", "--seeds", "3,4"]) == 0
    plan = capsys.readouterr().out
    assert "seeds: [3, 4]  ->  4 runs" in plan
    assert "| lora | lora |" in plan and "| ia3 | ia3 |" in plan
    assert "| full |" not in plan and "| qlora |" not in plan
    assert main(["plan", str(config), "--methods", "lora,dora"]) == 2
    err = capsys.readouterr().err
    assert "--methods: no method labelled 'dora' in this config" in err
    assert "its labels: full, lora, qlora, ia3" in err  # in config order


def test_off_a_terminal_the_log_has_lines_not_carriage_returns(
    tiny_roberta: Path, tiny_dataset: Path, tmp_path: Path
) -> None:
    raw = tiny_config(tiny_roberta, tiny_dataset, tmp_path / "out")
    raw["training"]["epochs"] = 1
    raw["data"]["train_size"] = 48
    config = write_config(raw, tmp_path / "exp.yaml")
    result = _cli("run", str(config), "--methods", "lora", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "\r" not in result.stdout and "\r" not in result.stderr
    assert "epoch 1: train loss" in result.stdout
    assert "Failed to load CPU gemm_4bit_forward" not in result.stderr
    assert "%|" not in result.stdout + result.stderr  # no progress bar of any library

    # -q: the run is found finished; nothing but where the results are is printed.
    quiet = _cli("-q", "run", str(config), "--methods", "lora", cwd=tmp_path)
    assert quiet.returncode == 0, quiet.stderr
    assert "finished earlier" not in quiet.stdout and "preparing data" not in quiet.stdout
    assert quiet.stdout.startswith("results: ")


def test_line_progress_writes_a_line_per_tenth_of_a_long_loop() -> None:
    lines: list[str] = []
    collect = logging.Handler(logging.INFO)
    collect.emit = lambda record: lines.append(record.getMessage())  # type: ignore[method-assign]
    level, disabled = LOG.level, LOG.disabled
    LOG.addHandler(collect)
    LOG.setLevel(logging.INFO)
    LOG.disabled = False
    try:
        with LineProgress(200, "epoch 1 training", "step", quiet_for_s=0) as bar:
            for _ in range(200):
                bar.set_postfix(loss="0.5000")
                bar.update(1)
        with LineProgress(200, "evaluating", "ex") as short:  # over before 30 s: silent
            short.update(200)
    finally:
        LOG.removeHandler(collect)
        LOG.setLevel(level)
        LOG.disabled = disabled
    assert len(lines) == 9, lines  # 10%, 20%, ..., 90%; the loop's end is its caller's line
    assert lines[0].startswith("  epoch 1 training: 20/200 step (10%)")
    assert lines[0].endswith("loss 0.5000")
