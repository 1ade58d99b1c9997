"""Trackers for real: a tiny experiment logged to MLflow (SQLite store) and TensorBoard, read
back through MLflow's client and TensorBoard's event reader; a tracker that fails does not
fail the run."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import tiny_config

from peftbench.api import load_config, run
from peftbench.results import read_record

mlflow = pytest.importorskip("mlflow")
pytest.importorskip("tensorboard")


def _scalars(log_dir: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(log_dir))
    events.Reload()
    return {
        tag: [(event.step, event.value) for event in events.Scalars(tag)]
        for tag in events.Tags()["scalars"]
    }


def test_runs_are_logged_to_mlflow_and_tensorboard(
    tiny_roberta: Path, tiny_dataset: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    raw = tiny_config(tiny_roberta, tiny_dataset, out, name="tracked")
    raw["training"]["epochs"] = 2
    raw["data"]["train_size"] = 64
    raw["methods"] = {"lora": {"learning_rate": 5e-3, "search": {"r": [2]}}}
    raw["tracking"] = {"report_to": ["mlflow", "tensorboard"]}
    outcome = run(load_config(raw))
    (record,) = outcome.records
    assert record["status"] == "success", record["error"]
    assert record["run_info"]["tracking"]["warnings"] == []
    steps_per_epoch = record["train_info"]["train_steps"] // 2

    client = mlflow.tracking.MlflowClient(tracking_uri=f"sqlite:///{out / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("tracked")
    found = client.search_runs([experiment.experiment_id])
    # One parent run for the search, made before the trials start (not one per trial).
    assert sorted(r.info.run_name for r in found) == [
        "lora-search",
        "lora-search-r=2",
        "lora-seed0",
        "report",
    ]
    runs = {r.info.run_name: r for r in found}
    final = runs["lora-seed0"]
    assert final.info.run_id == record["run_info"]["tracking"]["mlflow"]["run_id"]
    assert final.info.status == "FINISHED"
    # The search trials nest under their method's parent run; the final run does not.
    parent_id = runs["lora-search"].info.run_id
    assert runs["lora-search-r=2"].data.tags["mlflow.parentRunId"] == parent_id
    assert "mlflow.parentRunId" not in final.data.tags

    params = final.data.params
    assert params["method"] == "lora"
    assert float(params["method_params.learning_rate"]) == 5e-3
    assert params["training.epochs"] == "2"
    assert params["method_params.r"] == str(record["run_info"]["config"]["method_params"]["r"])

    losses = client.get_metric_history(final.info.run_id, "train/loss")
    assert [m.step for m in losses] == list(range(1, 2 * steps_per_epoch + 1))
    rates = client.get_metric_history(final.info.run_id, "train/learning_rate")
    assert rates[0].value > rates[-1].value  # linear decay over the run
    # Evaluations on the training loss's step axis, at each epoch's last step.
    accuracy = client.get_metric_history(final.info.run_id, "eval/accuracy")
    assert [(m.step, m.value) for m in accuracy] == [
        (e["epoch"] * steps_per_epoch, e["eval"]["accuracy"])
        for e in record["train_info"]["epochs"]
    ]
    epochs = client.get_metric_history(final.info.run_id, "train/epoch")
    assert [(m.step, m.value) for m in epochs] == [(steps_per_epoch, 1), (2 * steps_per_epoch, 2)]
    metrics = final.data.metrics
    assert metrics["final/accuracy"] == record["metrics"]["accuracy"]
    assert metrics["measurements/trainable_params"] == record["measurements"]["trainable_params"]
    assert metrics["measurements/memory/peak_rss_mb"] > 0
    artifacts = {a.path for a in client.list_artifacts(final.info.run_id)}
    assert artifacts == {"record.json", "predictions.json"}
    local = Path(client.download_artifacts(final.info.run_id, "record.json", str(tmp_path)))
    assert read_record(local)["run_id"] == "lora-seed0"
    report_run = runs["report"].info.run_id
    report_files = {a.path for a in client.list_artifacts(report_run)}
    assert "report.md" in report_files and "report.html" in report_files
    # The plots keep their folder, so that the report's links (plots/...) hold.
    plots = sorted(p.name for p in (out / "plots").iterdir())
    assert plots and "plots" in report_files
    assert sorted(a.path for a in client.list_artifacts(report_run, "plots")) == [
        f"plots/{name}" for name in plots
    ]

    board = out / "tensorboard"
    scalars = _scalars(board / "lora-seed0")
    assert [step for step, _ in scalars["train/loss"]] == list(range(1, 2 * steps_per_epoch + 1))
    assert [step for step, _ in scalars["eval/accuracy"]] == [steps_per_epoch, 2 * steps_per_epoch]
    assert [value for _, value in scalars["eval/accuracy"]] == pytest.approx(
        [e["eval"]["accuracy"] for e in record["train_info"]["epochs"]]
    )
    assert scalars["final/accuracy"][0][1] == pytest.approx(record["metrics"]["accuracy"])
    assert _scalars(board / "lora-search" / "lora-search-r=2")["train/loss"]


def test_a_failing_tracker_is_a_warning_in_the_record_not_a_failed_run(
    tiny_roberta: Path, tiny_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MLflow pointed at a store that cannot be created; TensorBoard and W&B (offline) carry on."""
    pytest.importorskip("wandb")
    for name, value in {
        "WANDB_MODE": "offline",
        "WANDB_SILENT": "true",
        "WANDB_CONFIG_DIR": str(tmp_path / "wandb-config"),
        "WANDB_CACHE_DIR": str(tmp_path / "wandb-cache"),
        "WANDB_DATA_DIR": str(tmp_path / "wandb-data"),
    }.items():
        monkeypatch.setenv(name, value)
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the store's directory should be")
    out = tmp_path / "out"
    raw = tiny_config(tiny_roberta, tiny_dataset, out, name="untracked")
    raw["training"]["epochs"] = 1
    raw["data"]["train_size"] = 32
    raw["methods"] = {"lora": {"learning_rate": 5e-3}}
    raw["tracking"] = {
        "report_to": ["mlflow", "tensorboard", "wandb"],
        "mlflow_tracking_uri": f"sqlite:///{blocker / 'mlflow.db'}",
    }
    outcome = run(load_config(raw))
    (record,) = outcome.records
    assert record["status"] == "success", record["error"]
    tracking = record["run_info"]["tracking"]
    (warning,) = tracking["warnings"]
    assert warning.startswith("mlflow tracking stopped at 'start'")
    assert "mlflow" not in tracking
    # The other trackers carried on.
    assert _scalars(Path(tracking["tensorboard"]["log_dir"]))["eval/accuracy"]
    (offline_run,) = (out / "wandb").glob(f"offline-run-*-{tracking['wandb']['run_id']}")
    logged = next(offline_run.glob("run-*.wandb")).read_bytes()
    for key in (b"train/loss", b"train/learning_rate", b"eval/accuracy", b"final/accuracy"):
        assert key in logged


def test_a_tracker_that_failed_mid_run_still_ends_its_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A failed call switches the tracker off, and says so at once (a run killed later never
    reaches its end), but its run is still ended (as FAILED: what it logged is incomplete),
    not left RUNNING."""
    from peftbench.tracking import TrackingSettings
    from peftbench.tracking.base import RunIdentity, TrackerSafety
    from peftbench.tracking.mlflow_tracker import MlflowTracker

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    settings = TrackingSettings(
        ("mlflow",), "e", str(tmp_path), uri, (tmp_path / "artifacts").as_uri()
    )
    warnings: list[str] = []
    safety = TrackerSafety("mlflow", warnings)
    tracker = safety.call("start", lambda: MlflowTracker(settings, RunIdentity("r", None)))
    client = mlflow.tracking.MlflowClient(tracking_uri=uri)
    assert client.get_run(tracker.run_id).info.status == "RUNNING"
    safety.call("log missing.json", lambda: tracker.log_artifact(tmp_path / "missing.json"))
    assert safety.failed and warnings[0].startswith("mlflow tracking stopped at 'log missing")
    assert "mlflow tracking stopped at 'log missing" in capsys.readouterr().err
    safety.finish("success")
    assert client.get_run(tracker.run_id).info.status == "FAILED"
    assert len(warnings) == 1
