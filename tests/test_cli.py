"""The command line end to end on the tiny model, and every bad input's message and exit code."""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from conftest import REPO, tiny_config, write_config

from peftbench.cli import main
from peftbench.results import load_records, read_record, write_json_atomic


def test_run_end_to_end_writes_records_summary_and_report(
    tiny_roberta: Path, tiny_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "out"
    config = write_config(tiny_config(tiny_roberta, tiny_dataset, out), tmp_path / "exp.yaml")
    assert main(["run", str(config)]) == 0

    records, skipped = load_records(out)
    assert skipped == []
    assert [r["run_id"] for r in records] == sorted(
        ["full-seed0", "lora-seed0", "qlora-seed0", "ia3-seed0"]
    )
    for record in records:
        assert record["status"] == "success", record["error"]
        assert len(record["train_info"]["epochs"]) == 2
        assert 0.0 <= record["metrics"]["accuracy"] <= 1.0
        assert record["train_info"]["train_tokens_per_s"] > 0
        assert record["measurements"]["memory"]["peak_rss_mb"] > 100
        tensors = record["measurements"]["memory"]["tensor_mib"]
        assert tensors["unit"] == "MiB" and tensors["peak_mib"] > 0
        assert tensors["train"]["total_mib"] > tensors["train"]["activations"] > 0
        assert record["measurements"]["model_size_mb"] > 0
        assert record["data_info"]["label_balance"]["test"] == {"0": 32, "1": 32}
        assert record["meta_info"]["packages"]["peft"]
        predictions = json.loads((out / "runs" / record["run_id"] / "predictions.json").read_text())
        assert len(predictions["predictions"]) == len(predictions["labels"]) == 64
    sizes = {r["run_info"]["method"]: r["measurements"]["model_size_mb"] for r in records}
    assert sizes["full"] > 10 * sizes["lora"]  # an adapter is far smaller than a model

    summary = (out / "summary.md").read_text()
    assert "accuracy (%)" in summary and "qlora-seed0" in summary
    assert (out / "summary.csv").read_text().startswith("run_id,method,seed,status,accuracy")
    assert (out / "report.html").exists()
    printed = capsys.readouterr().out
    assert "| run | method |" in printed

    # A second run finds every record finished and redoes nothing.
    stamps = {
        r["run_id"]: (out / "runs" / r["run_id"] / "record.json").stat().st_mtime_ns
        for r in records
    }
    assert main(["run", str(config)]) == 0
    assert "finished earlier, kept" in capsys.readouterr().out
    for run_id, stamp in stamps.items():
        assert (out / "runs" / run_id / "record.json").stat().st_mtime_ns == stamp

    # A changed config is a different run: it is done again.
    assert main(["run", str(config), "training.epochs=1", "methods={ia3: {}}"]) == 0
    record = read_record(out / "runs" / "ia3-seed0" / "record.json")
    assert len(record["train_info"]["epochs"]) == 1


def test_resuming_where_auto_resolves_to_another_precision_is_refused(
    tiny_roberta: Path, tiny_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "out"
    raw = tiny_config(tiny_roberta, tiny_dataset, out)
    raw["training"]["epochs"] = 1
    raw["methods"] = {"lora": {"learning_rate": 5e-3}, "ia3": {"learning_rate": 2e-2}}
    config = write_config(raw, tmp_path / "exp.yaml")
    assert main(["run", str(config)]) == 0
    here = read_record(out / "runs" / "ia3-seed0" / "record.json")["train_info"]["precision"]
    assert here in ("bf16", "fp32")  # precision: auto, as this CPU resolved it
    other = "fp32" if here == "bf16" else "bf16"
    # lora-seed0 as it would be kept from a session on the other kind of CPU
    lora = out / "runs" / "lora-seed0" / "record.json"
    record = read_record(lora)
    record["train_info"]["precision"] = other
    write_json_atomic(lora, record)
    capsys.readouterr()

    files = {path: path.stat().st_mtime_ns for path in out.rglob("*") if path.is_file()}
    err = _expect_bad_input(
        ["run", str(config)],
        capsys,
        f"another precision than it does here ({here}, ",
        f"): lora-seed0 in {other}. Resuming",
        f"delete those runs' directories under {out / 'runs'} to redo only them here in {here}",
        "--force to redo every run here",
    )
    assert "ia3-seed0" not in err
    assert {path: path.stat().st_mtime_ns for path in out.rglob("*") if path.is_file()} == files

    # --force redoes the runs (here lora's only): one precision again.
    assert main(["run", str(config), "--force", "methods={lora: {learning_rate: 5e-3}}"]) == 0
    records, _ = load_records(out)
    assert [r["train_info"]["precision"] for r in records] == [here, here]


def _expect_bad_input(argv: list[str], capsys: pytest.CaptureFixture, *needles: str) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("peftbench: error: ")
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err, err
    return err


@pytest.mark.parametrize(
    ("change", "needles"),
    [
        ({"methods": {"lorra": {}}}, ["unknown method 'lorra'", "registered methods: "]),
        ({"trainig": {"epochs": 1}}, ["unknown field 'trainig'", "accepted fields"]),
        (
            {"data": {"dataset": "DATA", "text_column": "review"}},
            ["no column 'review'", "data.text_column"],
        ),
        ({"data": {"dataset": "DATA", "train_size": 100000}}, ["data.train_size=100000"]),
        ({"model": {"name": "nobody/no-such-model"}}, ["'nobody/no-such-model'", "Fix:"]),
        ({"data": {"dataset": "nobody/no-such-dataset"}}, ["PEFTBENCH_DATA_DIR"]),
    ],
)
def test_bad_input_gives_one_message_and_exit_code_2(
    tiny_roberta: Path,
    tiny_dataset: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
    change: dict,
    needles: list[str],
) -> None:
    out = tmp_path / "out"
    config = tiny_config(tiny_roberta, tiny_dataset, out)
    for key, value in change.items():
        if isinstance(value, dict) and key != "methods":
            value = {k: (str(tiny_dataset) if v == "DATA" else v) for k, v in value.items()}
            config[key] = {**config.get(key, {}), **value}
        else:
            config[key] = value
    _expect_bad_input(["run", str(write_config(config, tmp_path / "c.yaml"))], capsys, *needles)
    assert not (out / "runs").exists()  # nothing half-written


def test_unwritable_output_directory(
    tiny_roberta: Path, tiny_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    config = write_config(
        tiny_config(tiny_roberta, tiny_dataset, blocker / "out"), tmp_path / "c.yaml"
    )
    _expect_bad_input(["run", str(config)], capsys, "cannot be written", "output_dir")


def test_missing_config_file(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    _expect_bad_input(["plan", str(tmp_path / "none.yaml")], capsys, "does not exist")


def test_plan_prints_the_study_parameter_counts_offline() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "peftbench.cli",
            "plan",
            str(REPO / "configs/imdb-roberta-base.yaml"),
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr
    # The memory prediction: one row per method with its breakdown, beside the published MB.
    assert "Predicted peak tensor memory (MiB" in result.stdout
    for label, published in (("full", "7,746"), ("lora", "4,120"), ("qlora", "4,260")):
        assert any(
            line.startswith(f"| {label} |") and line.endswith(f"| {published} |")
            for line in result.stdout.splitlines()
        ), label
    assert "| ia3 |" in result.stdout and "3,900" in result.stdout
    for label, count in (
        ("full", "124,647,170"),
        ("lora", "887,042"),
        ("qlora", "887,042"),
        ("ia3", "656,642"),
    ):
        assert f"| {label} | {label} |" in result.stdout
        assert count in result.stdout
    assert "train 3000 / test 2000" in result.stdout


def test_planning_a_shipped_architecture_does_not_ask_the_hub(tmp_path: Path) -> None:
    # A Hub that answers every request with 404 and counts them. With network and an empty
    # cache, a shipped architecture is planned from its shipped copy without a request: the
    # Hub client would otherwise retry for about 30 s on a machine without network.
    requests: list[str] = []

    class Hub(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the handler's required name)
            requests.append(self.path)
            self.send_error(404)

        do_HEAD = do_GET  # noqa: N815

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
    env |= {"HF_ENDPOINT": f"http://127.0.0.1:{server.server_port}", "HF_HOME": str(tmp_path)}
    script = (
        "from peftbench.config import ModelConfig\n"
        "from peftbench.models import architecture_for_planning\n"
        "_, source = architecture_for_planning(ModelConfig(name='roberta-base'), 2)\n"
        "print(source)\n"
        "random = ModelConfig(name='roberta-base', init='random')\n"
        "_, source = architecture_for_planning(random, 2)\n"
        "print(source)\n"
        "_, source = architecture_for_planning(ModelConfig(name='no-such/model-xyz'), 2)\n"
    )
    try:
        result = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300
        )
    finally:
        server.shutdown()
    # Pretrained or random weights, the shipped architecture is what plan sizes and names.
    assert result.stdout.strip().splitlines()[:2] == ["architecture shipped with peftbench"] * 2
    # Only the name that ships no architecture went to the Hub (and was refused clearly).
    assert not [path for path in requests if "roberta-base" in path], requests
    assert [path for path in requests if "no-such/model-xyz" in path], requests
    assert "could not be loaded" in result.stderr


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["--gpu", "Voodoo 5"], "known: NVIDIA T4"),
        (["--memory", "lots"], "accepted forms"),
        (["--memory", "24 parsecs"], "accepted forms"),
    ],
)
def test_plan_refuses_unknown_gpus_and_sizes(
    capsys: pytest.CaptureFixture, flags: list[str], expected: str
) -> None:
    config = str(REPO / "configs/imdb-roberta-base.yaml")
    _expect_bad_input(["plan", config, *flags], capsys, expected)


def test_plan_says_when_no_method_fits(
    tiny_roberta: Path, tiny_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    raw = tiny_config(tiny_roberta, tiny_dataset, tmp_path / "out")
    raw["methods"] = {"lora": {"learning_rate": 5e-3}}
    config = write_config(raw, tmp_path / "c.yaml")
    _expect_bad_input(["plan", str(config), "--memory", "0.01MiB"], capsys, "no method")


def test_real_entry_point_exits_2_without_traceback(tmp_path: Path) -> None:
    config = write_config(
        {"name": "x", "model": {"name": "m"}, "data": {"dataset": "d"}, "methods": {"nope": {}}},
        tmp_path / "c.yaml",
    )
    result = subprocess.run(
        [sys.executable, "-m", "peftbench.cli", "run", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "unknown method 'nope'" in result.stderr and "Traceback" not in result.stderr


def test_methods_lists_the_registry(capsys: pytest.CaptureFixture) -> None:
    assert main(["methods"]) == 0
    out = capsys.readouterr().out
    for name in ("full:", "lora:", "qlora:", "ia3:"):
        assert name in out
    assert "learning_rate = 0.0005" in out


def test_too_little_disk_fails_before_any_work(
    tiny_roberta: Path,
    tiny_dataset: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 2**20, 2**20))
    out = tmp_path / "out"
    config = write_config(tiny_config(tiny_roberta, tiny_dataset, out), tmp_path / "c.yaml")
    _expect_bad_input(["run", str(config)], capsys, "not enough disk", "MiB needed, 1 MiB free")
    assert not (out / "runs").exists()


def test_plan_states_resource_needs(tiny_roberta: Path, tiny_dataset: Path, tmp_path: Path):
    from peftbench.config import parse_config
    from peftbench.plan import count_method_parameters, estimate_resources

    config = parse_config(tiny_config(tiny_roberta, tiny_dataset, tmp_path / "out"))
    rows = count_method_parameters(config)
    needs = estimate_resources(config, rows)
    full = next(r for r in rows if r["method"] == "full")
    # Full fine-tuning's checkpoint (weights + two Adam moments) and saved model dominate.
    assert needs["disk_mb"] * 2**20 >= full["total_params"] * (12 + 4)
    assert needs["memory_mb"] * 2**20 >= full["total_params"] * 16
