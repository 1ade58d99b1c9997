"""Fault injection: killed, interrupted, failing and concurrent runs lose nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import tiny_config, write_config
from filelock import FileLock

from peftbench.checkpoints import checkpoint_file, claim_afresh, owned_by
from peftbench.cli import main
from peftbench.execution import LOCK_FILE
from peftbench.report import build_report
from peftbench.results import load_records, read_record


def _config(tmp_path: Path, model: Path, data: Path, out: Path, **extra) -> Path:
    return write_config(tiny_config(model, data, out, **extra), tmp_path / f"{out.name}.yaml")


def _start(config: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "peftbench.cli", "run", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group: we signal parent and worker together
        # As if started from a terminal: a shell's background job (CI) inherits SIGINT ignored.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def _wait_for(path: Path, process: subprocess.Popen, timeout: float = 240) -> None:
    deadline = time.time() + timeout
    while not path.exists():
        assert process.poll() is None, process.stdout.read()
        assert time.time() < deadline, f"{path} never appeared"
        time.sleep(0.02)


LONG_TRAINING = {
    "epochs": 3,
    "train_batch_size": 8,
    "eval_batch_size": 32,
    "max_length": 64,
    "num_threads": 1,
}


def test_sigkill_mid_run_then_rerun_resumes_to_the_same_result(
    tiny_roberta: Path, tiny_dataset: Path, tmp_path: Path
) -> None:
    methods = {"lora": {"learning_rate": 5e-3}}
    killed_out, clean_out = tmp_path / "killed", tmp_path / "clean"
    killed = _config(
        tmp_path, tiny_roberta, tiny_dataset, killed_out, methods=methods, training=LONG_TRAINING
    )
    clean = _config(
        tmp_path, tiny_roberta, tiny_dataset, clean_out, methods=methods, training=LONG_TRAINING
    )

    process = _start(killed)
    _wait_for(checkpoint_file(killed_out / "runs" / "lora-seed0"), process)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert not (killed_out / "runs" / "lora-seed0" / "record.json").exists()

    assert main(["run", str(killed)]) == 0
    resumed = read_record(killed_out / "runs" / "lora-seed0" / "record.json")
    assert resumed["status"] == "success"
    assert resumed["train_info"]["resumed_from_epoch"] >= 1
    assert not checkpoint_file(killed_out / "runs" / "lora-seed0").exists()

    assert main(["run", str(clean)]) == 0
    reference = read_record(clean_out / "runs" / "lora-seed0" / "record.json")
    assert reference["train_info"]["resumed_from_epoch"] is None
    assert resumed["config_hash"] == reference["config_hash"]
    for got, want in zip(
        resumed["train_info"]["epochs"], reference["train_info"]["epochs"], strict=True
    ):
        assert got["train_loss"] == pytest.approx(want["train_loss"], rel=1e-5)
        assert got["eval"]["accuracy"] == pytest.approx(want["eval"]["accuracy"], abs=1e-9)
    predictions = [
        json.loads((out / "runs/lora-seed0/predictions.json").read_text())
        for out in (killed_out, clean_out)
    ]
    assert predictions[0]["predictions"] == predictions[1]["predictions"]


def test_sigint_cancels_the_current_run_and_leaves_others_intact(
    tiny_roberta: Path, tiny_dataset: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    methods = {"ia3": {"learning_rate": 2e-2}, "lora": {"learning_rate": 5e-3}}
    config = _config(
        tmp_path, tiny_roberta, tiny_dataset, out, methods=methods, training=LONG_TRAINING
    )
    assert main(["run", str(config), "methods={ia3: {learning_rate: 0.02}}"]) == 0
    finished = out / "runs" / "ia3-seed0" / "record.json"
    before = finished.read_bytes()

    process = _start(config)
    _wait_for(checkpoint_file(out / "runs" / "lora-seed0"), process)
    os.killpg(process.pid, signal.SIGINT)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 130, output
    canceled = read_record(out / "runs" / "lora-seed0" / "record.json")
    assert canceled["status"] == "canceled"
    assert canceled["error"]["epoch_reached"] >= 1
    assert finished.read_bytes() == before  # the finished run's record is untouched

    assert main(["run", str(config)]) == 0  # resumes the canceled run
    assert read_record(out / "runs" / "lora-seed0" / "record.json")["status"] == "success"


def test_failing_and_diverging_methods_are_recorded_and_the_others_finish(
    tiny_roberta: Path, tiny_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "out"
    methods = {
        "broken": {"method": "lora", "target_modules": ["no_such_module"]},
        "diverging": {"method": "full", "learning_rate": 1.0e12},
        "lora": {"learning_rate": 5e-3},
    }
    config = _config(tmp_path, tiny_roberta, tiny_dataset, out, methods=methods)
    assert main(["run", str(config)]) == 1
    records = {r["run_id"]: r for r in load_records(out)[0]}
    assert records["lora-seed0"]["status"] == "success"
    broken = records["broken-seed0"]
    assert broken["status"] == "failed"
    assert broken["error"]["type"] == "NoMatchingPeftModuleError"  # raised by PEFT, recorded
    assert "No modules were targeted" in broken["error"]["message"]
    diverging = records["diverging-seed0"]
    assert diverging["status"] == "failed"
    assert diverging["error"]["type"] == "NonFiniteLoss"
    assert diverging["error"]["epoch_reached"] == 0  # stopped at once, not after all epochs
    assert "not successful: broken-seed0, diverging-seed0" in capsys.readouterr().err


def test_corrupt_record_is_reported_and_redone(
    tiny_roberta: Path, tiny_dataset: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    config = _config(
        tmp_path,
        tiny_roberta,
        tiny_dataset,
        out,
        methods={"ia3": {"learning_rate": 2e-2}, "lora": {"learning_rate": 5e-3}},
    )
    assert main(["run", str(config)]) == 0
    record = out / "runs" / "lora-seed0" / "record.json"
    record.write_text(record.read_text()[:200])  # truncated mid-write by some other tool

    result = build_report([out], tmp_path / "report", ("md",))
    assert any("lora-seed0" in message for message in result.skipped)
    assert "ia3" in (tmp_path / "report" / "report.md").read_text()

    assert main(["run", str(config)]) == 0
    assert read_record(record)["status"] == "success"


def test_a_second_concurrent_run_is_refused(
    tiny_roberta: Path, tiny_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    config = _config(tmp_path, tiny_roberta, tiny_dataset, out)
    with FileLock(out / LOCK_FILE):  # held, as a running `peftbench run` holds it
        assert main(["run", str(config)]) == 2
    assert "another peftbench run is using" in capsys.readouterr().err
    assert not (out / "runs").exists()


def test_force_discards_an_earlier_invocations_checkpoint_but_a_retry_keeps_its_own(
    tmp_path: Path,
) -> None:
    """--force on Ray: the first attempt claims the checkpoint directory for its invocation;
    a retry of the same invocation (its worker lost) resumes from what it wrote since, and the
    next --force invocation discards it."""
    run_dir = tmp_path / "run"
    earlier = checkpoint_file(run_dir)
    earlier.parent.mkdir(parents=True)
    earlier.write_bytes(b"epoch 2 of an earlier invocation")

    claim_afresh(run_dir, "invocation-b")  # first attempt of a --force invocation
    assert not checkpoint_file(run_dir).exists() and owned_by(run_dir, "invocation-b")
    checkpoint_file(run_dir).write_bytes(b"epoch 1 of invocation b")  # then its worker dies

    claim_afresh(run_dir, "invocation-b")  # its retry
    assert checkpoint_file(run_dir).read_bytes() == b"epoch 1 of invocation b"

    claim_afresh(run_dir, "invocation-c")  # a later --force
    assert not checkpoint_file(run_dir).exists()
    assert owned_by(run_dir, "invocation-c") and not owned_by(run_dir, "invocation-b")
