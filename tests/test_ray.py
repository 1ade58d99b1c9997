"""The Ray backend, on a real embedded Ray (2 CPUs) and a real two-node cluster on this machine.

Runs are tiny (the fixtures' 2-layer models, one or a few short epochs); no mock of Ray, the
model or the trainer.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
import torch
from conftest import KILLED_RAY_WORKERS, REPO, embedded_ray, tiny_config, write_config

from peftbench.checkpoints import checkpoint_file, load_checkpoint
from peftbench.cli import main
from peftbench.results import load_records, read_record

ray = pytest.importorskip("ray")  # declared in the test extra; the suite installs it
# make test runs two xdist workers: one of them takes both Ray files, one test after another,
# since two Ray instances at once would compete for the CPUs that each test reserves.
pytestmark = pytest.mark.xdist_group("ray")

SHORT = {"epochs": 1, "train_batch_size": 16, "eval_batch_size": 32, "max_length": 48}
LONG = {"epochs": 3, "train_batch_size": 8, "eval_batch_size": 32, "max_length": 48}
# Fields that say when, where and how fast a run went; everything else must be equal.
HOST_FIELDS = {
    "run_info": {"started_at", "finished_at", "execution"},
    "train_info": {"train_time_s", "eval_time_s", "train_tokens_per_s", "eval_examples_per_s"},
    "measurements": {"memory"},
}
LEFT_BEHIND_LOSS = 1234.5  # marks the epochs of a checkpoint that --force must discard
EPOCH_TIMES = {"train_time_s", "eval_time_s"}
SERVING_TIMES = {"latency_s_per_example_batch1", "throughput_examples_per_s"}


@pytest.fixture(scope="module", name="embedded_ray")
def embedded_ray_fixture():
    """One embedded Ray for the module (2 CPUs, a small object store, no dashboard).

    run_experiment uses a Ray that is already initialised and leaves it running."""
    with embedded_ray("pb-ray-"):
        yield ray


def _config(model: Path, data: Path, out: Path, training: dict, methods: dict, **extra) -> dict:
    raw = tiny_config(model, data, out, training=training, methods=methods, **extra)
    raw["training"]["num_threads"] = 1  # the same in both backends: equal numbers
    raw["data"] = {**raw["data"], "train_size": 64, "test_size": 32}
    return raw


def _comparable(record: dict) -> dict:
    record = copy.deepcopy(record)
    for section, names in HOST_FIELDS.items():
        for name in names:
            record[section].pop(name, None)
    record["train_info"].pop("flops", None)  # achieved FLOP/s and MFU are timings
    record.pop("meta_info")
    for epoch in record["train_info"]["epochs"]:
        for name in EPOCH_TIMES:
            epoch.pop(name)
    serving = record["measurements"].get("serving") or {}
    for variant in ("unmerged", "merged"):
        for name in SERVING_TIMES:
            (serving.get(variant) or {}).pop(name, None)
    return record


def _interval(record: dict) -> tuple[float, float]:
    """From the run's worker process start to its return (training alone can be too short
    to overlap on a loaded machine, where starting a worker takes longer than a tiny run)."""
    return tuple(record["run_info"]["execution"]["process_span_s"])


def test_two_runs_at_a_time_equal_the_local_backend(
    embedded_ray, tiny_roberta: Path, tiny_dataset: Path, tmp_path: Path
) -> None:
    methods = {"lora": {"learning_rate": 5e-3}, "ia3": {"learning_rate": 2e-2}}
    local_out, ray_out = tmp_path / "local", tmp_path / "ray"
    # Four runs on Ray, two at a time; seed 0's two also on the local backend to compare.
    for out, extra, seeds in ((local_out, [], [0]), (ray_out, ["--parallel", "2"], [0, 1])):
        raw = _config(tiny_roberta, tiny_dataset, out, SHORT, methods, seeds=seeds)
        assert main(["run", str(write_config(raw, tmp_path / f"{out.name}.yaml")), *extra]) == 0

    local = {r["run_id"]: r for r in load_records(local_out)[0]}
    parallel = {r["run_id"]: r for r in load_records(ray_out)[0]}
    assert sorted(local) == ["ia3-seed0", "lora-seed0"]
    assert sorted(parallel) == ["ia3-seed0", "ia3-seed1", "lora-seed0", "lora-seed1"]
    for run_id, record in parallel.items():
        assert record["status"] == "success", record["error"]
        assert record["run_info"]["execution"]["backend"] == "ray"
        assert (ray_out / "runs" / run_id / "model").is_dir()
    for run_id in local:
        record = parallel[run_id]
        assert _comparable(record) == _comparable(local[run_id]), run_id
        for out in (local_out, ray_out):
            assert (out / "runs" / run_id / "model").is_dir()
        predictions = [
            json.loads((out / "runs" / run_id / "predictions.json").read_text())
            for out in (local_out, ray_out)
        ]
        assert predictions[0] == predictions[1]
        log = (ray_out / "runs" / run_id / "log.txt").read_text()
        assert "epoch 1: train loss" in log
        assert log.startswith(f"=== {run_id}, attempt started 20")  # each attempt opens so
    # Two at a time: some pair of runs was running at the same moment.
    intervals = sorted(_interval(r) for r in parallel.values())
    assert any(
        later[0] < earlier[1] for earlier, later in zip(intervals, intervals[1:], strict=False)
    )
    pids = {r["run_info"]["execution"]["pid"] for r in parallel.values()}
    assert len(pids) == 4  # a fresh worker process per run


def _kill_when_checkpointed(
    run_dir: Path, times: int = 1, deadline_s: float = 300, keep_copy: Path | None = None
) -> threading.Thread:
    """SIGKILL the Ray worker of a run each time it writes a new epoch checkpoint, `times`
    times (copying the first such checkpoint to `keep_copy`, when given). It kills nothing
    without a new checkpoint, so a worker that Ray lost on its own before checkpointing (seen
    in CI under load) is left to the run's retry; it gives up after `deadline_s`."""

    def kill() -> None:
        deadline = time.time() + deadline_s
        seen, killed = None, 0
        while killed < times and time.time() < deadline:
            try:
                written = checkpoint_file(run_dir).stat().st_mtime_ns
            except OSError:
                written = None
            if written is None or written == seen:
                time.sleep(0.02)
                continue
            seen = written
            if keep_copy is not None and killed == 0:
                shutil.copyfile(checkpoint_file(run_dir), keep_copy)
            found = False
            for process in psutil.process_iter(["cmdline"]):
                if f"peftbench:{run_dir.name}" in " ".join(process.info["cmdline"] or []):
                    KILLED_RAY_WORKERS.add(process.pid)
                    process.kill()
                    found = True
            killed += found

    thread = threading.Thread(target=kill, daemon=True)
    thread.start()
    return thread


def _mlflow_statuses(out: Path, name: str) -> dict[str, list[str]]:
    """run id -> the statuses of its MLflow runs (in the default store under out)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{out.resolve() / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(name)
    statuses: dict[str, list[str]] = {}
    for run in client.search_runs([experiment.experiment_id]):
        if "peftbench.run_id" in run.data.tags:  # not the experiment's report run
            statuses.setdefault(run.data.tags["peftbench.run_id"], []).append(run.info.status)
    return {run_id: sorted(found) for run_id, found in statuses.items()}


def test_a_failing_run_and_a_killed_worker_are_recorded_and_the_killed_one_resumes(
    embedded_ray, tiny_roberta: Path, tiny_dataset: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    methods = {
        "broken": {"method": "lora", "target_modules": ["no_such_module"]},
        "lora": {"learning_rate": 5e-3},
        "ia3": {"learning_rate": 2e-2},
    }
    # One retry, and every attempt of lora-seed0 is killed after its next epoch checkpoint,
    # so the run fails the same way when Ray loses one of its workers on its own first.
    raw = _config(tiny_roberta, tiny_dataset, out, LONG, methods, execution={"max_retries": 1})
    raw["tracking"] = {"report_to": ["mlflow"]}
    config = write_config(raw, tmp_path / "c.yaml")
    killer = _kill_when_checkpointed(out / "runs" / "lora-seed0", times=2)
    assert main(["run", str(config), "--parallel", "2"]) == 1
    killer.join()
    # each killed worker's MLflow run is ended by the driver, not left RUNNING
    statuses = _mlflow_statuses(out, raw["name"])
    assert statuses.get("lora-seed0") and set(statuses["lora-seed0"]) == {"FAILED"}, statuses
    assert statuses["ia3-seed0"] == ["FINISHED"]

    records = {r["run_id"]: r for r in load_records(out)[0]}
    assert records["ia3-seed0"]["status"] == "success"
    assert records["broken-seed0"]["status"] == "failed"
    assert records["broken-seed0"]["error"]["type"] == "NoMatchingPeftModuleError"
    killed = records["lora-seed0"]
    assert killed["status"] == "failed"
    assert "Ray workers ended without a result" in killed["error"]["message"], killed["error"]
    assert killed["error"]["epoch_reached"] >= 1  # read from its checkpoint
    kept = (out / "runs" / "ia3-seed0" / "record.json").stat().st_mtime_ns

    assert main(["run", str(config), "--parallel", "2"]) == 1  # broken fails again
    resumed = read_record(out / "runs" / "lora-seed0" / "record.json")
    assert resumed["status"] == "success"
    assert resumed["train_info"]["resumed_from_epoch"] >= 1
    assert (out / "runs" / "ia3-seed0" / "record.json").stat().st_mtime_ns == kept


def test_a_lost_worker_is_retried_from_its_checkpoint_and_force_starts_afresh(
    embedded_ray, tiny_roberta: Path, tiny_dataset: Path, tmp_path: Path
) -> None:
    """execution.max_retries restarts a run whose worker died, from its checkpoint on
    execution.storage; --force discards such a checkpoint instead of resuming from it."""
    out, storage = tmp_path / "out", tmp_path / "storage"
    execution = {"backend": "ray", "storage": str(storage), "max_retries": 2}
    methods = {"lora": {"learning_rate": 5e-3}}
    raw = _config(tiny_roberta, tiny_dataset, out, LONG, methods, execution=execution)
    raw["tracking"] = {"report_to": ["mlflow"]}
    config = write_config(raw, tmp_path / "c.yaml")
    stored_run = storage / raw["name"] / "runs" / "lora-seed0"
    left_behind = tmp_path / "epoch-checkpoint.pt"

    killer = _kill_when_checkpointed(stored_run, keep_copy=left_behind)
    assert main(["run", str(config)]) == 0  # killed, retried, finished
    killer.join()
    record = read_record(out / "runs" / "lora-seed0" / "record.json")
    assert record["status"] == "success", record["error"]
    # >= 2, not == 2: a retry budget of 2 also absorbs a worker that Ray loses on its own
    # (seen once in CI under load, before the first checkpoint)
    assert record["run_info"]["execution"]["attempts"] >= 2
    assert record["train_info"]["resumed_from_epoch"] >= 1
    assert not checkpoint_file(stored_run).exists()  # a finished run removes its checkpoint
    # each lost attempt's MLflow run is ended as FAILED; the last one finished
    # (an attempt whose worker Ray lost before it opened its MLflow run has none)
    statuses = _mlflow_statuses(out, raw["name"])
    assert statuses.keys() == {"lora-seed0"}, statuses
    *lost, last = statuses["lora-seed0"]
    assert last == "FINISHED" and "FAILED" in lost and set(lost) == {"FAILED"}, statuses
    assert len(statuses["lora-seed0"]) <= record["run_info"]["execution"]["attempts"]

    # A checkpoint left on the storage (by a run killed with no retry left), valid for this
    # run: without --force the run would resume from it (as above); --force discards it, so
    # the run starts from epoch 0. Its epoch 1 is marked with an impossible train loss, so
    # the record shows whose epochs it carries even if Ray loses the forced run's worker on
    # its own, and the retry resumes from the forced run's own checkpoint (as it should).
    state = torch.load(left_behind, weights_only=False)
    state["progress"]["epochs"][0]["train_loss"] = LEFT_BEHIND_LOSS
    checkpoint_file(stored_run).parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, checkpoint_file(stored_run))
    assert load_checkpoint(stored_run, record["config_hash"]) is not None
    assert main(["run", str(config), "--force"]) == 0
    record = read_record(out / "runs" / "lora-seed0" / "record.json")
    assert record["status"] == "success", record["error"]
    epochs = record["train_info"]["epochs"]
    assert [e["epoch"] for e in epochs] == [1, 2, 3]
    assert all(e["train_loss"] != LEFT_BEHIND_LOSS for e in epochs)  # none from the left one
    if record["run_info"]["execution"]["attempts"] == 1:
        assert not record["train_info"]["resumed_from_epoch"]  # None: not resumed
    assert not checkpoint_file(stored_run).exists()


def _processes_with(marker: str) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter():
        try:
            if process.environ().get("PEFTBENCH_TEST_MARKER") == marker:
                found.append(process)
        except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
    return found


def test_driver_killed_mid_study_then_restarted_redoes_nothing_finished(
    embedded_ray, tiny_roberta: Path, tiny_dataset: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    methods = {"ia3": {"learning_rate": 2e-2}, "lora": {"learning_rate": 5e-3}}
    config = _config(tiny_roberta, tiny_dataset, out, LONG, methods, seeds=[0, 1])
    path = write_config(config, tmp_path / "c.yaml")
    marker = f"driver-kill-{os.getpid()}-{time.time()}"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")]),
        "PEFTBENCH_TEST_MARKER": marker,  # to find (and end) only this test's processes
    }
    driver = subprocess.Popen(
        [sys.executable, "-m", "peftbench.cli", "run", str(path), "--parallel", "2"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
        start_new_session=True,
    )
    try:
        deadline = time.time() + 400
        while (
            not any(r["status"] == "success" for r in load_records(out)[0])
            and time.time() < deadline
        ):
            assert driver.poll() is None, "the study ended before it could be killed"
            time.sleep(0.1)
        os.killpg(driver.pid, signal.SIGKILL)  # the driver and its embedded Ray
        driver.wait()
    finally:
        time.sleep(2)
        for process in _processes_with(marker):  # workers in sessions of their own
            process.kill()
    done_before = {
        r["run_id"]: (out / "runs" / r["run_id"] / "record.json").stat().st_mtime_ns
        for r in load_records(out)[0]
        if r["status"] == "success"
    }
    assert done_before and len(done_before) < 4

    assert main(["run", str(path), "--parallel", "2"]) == 0
    records = {r["run_id"]: r for r in load_records(out)[0]}
    assert sorted(records) == ["ia3-seed0", "ia3-seed1", "lora-seed0", "lora-seed1"]
    assert all(r["status"] == "success" for r in records.values())
    for run_id, stamp in done_before.items():
        assert (out / "runs" / run_id / "record.json").stat().st_mtime_ns == stamp


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _expect_refused(argv: list[str], out: Path, capsys: pytest.CaptureFixture, *needles: str):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("peftbench: error:") == 1 and "Traceback" not in err
    for needle in needles:
        assert needle in err, err
    assert not out.exists()  # nothing written


def test_bad_execution_input_is_refused_before_anything_is_written(
    embedded_ray, tiny_roberta: Path, tiny_dataset: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "out"
    raw = _config(tiny_roberta, tiny_dataset, out, SHORT, {"ia3": {"learning_rate": 2e-2}})
    config = str(write_config(raw, tmp_path / "c.yaml"))
    port = _free_port()  # nothing listens there
    _expect_refused(
        ["run", config, "execution.backend=ray", f"execution.address=127.0.0.1:{port}"],
        out,
        capsys,
        f"cannot reach a Ray cluster at 127.0.0.1:{port}",
        "ray start --head",
    )
    # This embedded Ray has 2 CPUs and no GPU.
    _expect_refused(
        ["run", config, "execution.resources_per_run={gpus: 1}", "--parallel", "2"],
        out,
        capsys,
        "execution.resources_per_run {cpus: 1, gpus: 1}",
        "no room",
        "2 CPUs, 0 GPUs",
    )
    _expect_refused(
        ["run", config, "execution.max_concurrent=2"],
        out,
        capsys,
        "execution.max_concurrent: needs execution.backend: ray",
    )
    _expect_refused(["run", config, "execution.backend=spark"], out, capsys, "execution.backend")


def test_a_ray_run_logs_to_the_trackers_and_q_keeps_the_driver_quiet(
    embedded_ray, tiny_roberta: Path, tiny_dataset: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "out"
    raw = _config(tiny_roberta, tiny_dataset, out, SHORT, {"lora": {"method": "lora"}})
    raw["execution"] = {"backend": "ray"}
    raw["tracking"] = {"report_to": ["tensorboard", "mlflow"]}
    assert main(["-q", "run", str(write_config(raw, tmp_path / "c.yaml"))]) == 0
    printed = capsys.readouterr()
    assert "started" not in printed.out and "Ray:" not in printed.out  # progress is INFO
    assert "results:" in printed.out
    (record,) = load_records(out)[0]
    assert record["status"] == "success"
    tracking = record["run_info"]["tracking"]  # written by the worker, returned to the driver
    assert tracking["warnings"] == []
    assert Path(tracking["tensorboard"]["log_dir"]).is_relative_to(out / "tensorboard")
    assert list((out / "tensorboard").rglob("events.out.tfevents.*"))
    assert tracking["mlflow"]["run_id"] and (out / "mlflow.db").is_file()


def test_ray_missing_is_one_clear_error(tiny_roberta: Path, tiny_dataset: Path, tmp_path: Path):
    hidden = tmp_path / "hide-ray"
    hidden.mkdir()
    # A module named ray that fails to import, ahead of the installed one on the path.
    (hidden / "ray.py").write_text("raise ImportError(\"No module named 'ray'\")\n")
    out = tmp_path / "out"
    raw = _config(tiny_roberta, tiny_dataset, out, SHORT, {"ia3": {"learning_rate": 2e-2}})
    config = write_config(raw, tmp_path / "c.yaml")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(hidden), str(REPO / "src")])}
    result = subprocess.run(
        [sys.executable, "-m", "peftbench.cli", "run", str(config), "--parallel", "2"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 2, result.stderr
    assert "pip install 'peftbench[ray]'" in result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists()


def _without_dropout(model_dir: Path, directory: Path) -> Path:
    """The tiny model with every dropout off: then data-parallel training computes the same
    gradients as one worker (up to the order of floating-point sums)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(model_dir)
    model.config.hidden_dropout_prob = 0.0
    model.config.attention_probs_dropout_prob = 0.0
    model.save_pretrained(directory)
    AutoTokenizer.from_pretrained(model_dir).save_pretrained(directory)
    return directory


def test_two_workers_train_one_run_data_parallel_like_one_worker(
    embedded_ray, tiny_roberta: Path, tiny_dataset: Path, tmp_path: Path
) -> None:
    model = _without_dropout(tiny_roberta, tmp_path / "model")
    methods = {"lora": {"learning_rate": 1e-2}}
    training = {**LONG, "epochs": 2, "precision": "fp32"}
    one, two = tmp_path / "one", tmp_path / "two"
    raw = _config(model, tiny_dataset, one, training, methods)
    assert main(["run", str(write_config(raw, tmp_path / "one.yaml"))]) == 0
    raw = _config(model, tiny_dataset, two, training, methods)
    raw["execution"] = {"backend": "ray", "workers_per_run": 2, "resources_per_run": {"cpus": 1}}
    assert main(["run", str(write_config(raw, tmp_path / "two.yaml"))]) == 0

    single = read_record(one / "runs" / "lora-seed0" / "record.json")
    parallel = read_record(two / "runs" / "lora-seed0" / "record.json")
    assert parallel["run_info"]["execution"]["workers"] == 2
    assert parallel["config_hash"] != single["config_hash"]  # a different computation
    memory = parallel["measurements"]["memory"]
    assert len(memory["per_worker"]) == 2
    assert memory["total_peak_rss_mb"] == pytest.approx(
        sum(m["peak_rss_mb"] for m in memory["per_worker"]), abs=0.2
    )
    # Every step saw the whole batch of 8: 64 examples -> 8 steps per epoch, as one worker.
    assert parallel["train_info"]["train_steps"] == single["train_info"]["train_steps"] == 16
    assert parallel["train_info"]["train_tokens"] == single["train_info"]["train_tokens"]
    # The check: without dropout, in fp32, the same per-epoch training loss (to 1e-4
    # relative: only the order of sums differs) and the same predictions on every example
    # (gathered from both workers).
    for got, want in zip(
        parallel["train_info"]["epochs"], single["train_info"]["epochs"], strict=True
    ):
        assert got["train_loss"] == pytest.approx(want["train_loss"], rel=1e-4)
        assert got["eval"]["loss"] == pytest.approx(want["eval"]["loss"], rel=1e-4)
    predictions = [
        json.loads((out / "runs" / "lora-seed0" / "predictions.json").read_text())
        for out in (one, two)
    ]
    assert predictions[1]["example_ids"] == predictions[0]["example_ids"]
    assert predictions[1]["predictions"] == predictions[0]["predictions"]
    assert parallel["metrics"]["accuracy"] == single["metrics"]["accuracy"]


def test_sigterm_cancels_running_and_pending_runs(
    tiny_roberta: Path, tiny_dataset: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    methods = {"lora": {"learning_rate": 5e-3}, "ia3": {"learning_rate": 2e-2}}
    # Many epochs: a run must still be running when SIGTERM arrives after its first checkpoint
    # (with 3, a loaded machine let it finish first); canceled runs cost none of them.
    training = {**LONG, "epochs": 12}
    config = _config(tiny_roberta, tiny_dataset, out, training, methods, seeds=[0, 1, 2])
    path = write_config(config, tmp_path / "c.yaml")
    run_ids = [f"{label}-seed{seed}" for label in ("ia3", "lora") for seed in (0, 1, 2)]
    marker = f"sigterm-{os.getpid()}-{time.time()}"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")]),
        "PEFTBENCH_TEST_MARKER": marker,
    }
    driver = subprocess.Popen(
        [sys.executable, "-m", "peftbench.cli", "run", str(path), "--parallel", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        start_new_session=True,
    )
    try:
        deadline = time.time() + 400
        while not any(checkpoint_file(out / "runs" / run_id).exists() for run_id in run_ids):
            assert driver.poll() is None and time.time() < deadline
            time.sleep(0.05)
        driver.send_signal(signal.SIGTERM)  # the driver only, as a job scheduler would
        output, _ = driver.communicate(timeout=180)
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
        time.sleep(2)
        leftovers = _processes_with(marker)
        for process in leftovers:
            process.kill()
    assert driver.returncode == 130, output[-3000:]
    assert not leftovers  # the runs' workers ended with the driver
    assert "interrupted; canceled:" in output
    records = {r["run_id"]: r for r in load_records(out)[0]}
    assert sorted(records) == sorted(run_ids)  # every run has a record, started or not
    canceled = [r for r in records.values() if r["status"] == "canceled"]
    assert {r["status"] for r in records.values()} <= {"success", "canceled"}
    assert max(r["error"]["epoch_reached"] for r in canceled) >= 1  # from its checkpoint
    assert any("before it started" in r["error"]["message"] for r in canceled)  # pending


def test_default_resources_share_a_node_and_count_slots() -> None:
    from peftbench.config import ExecutionConfig, RunResources
    from peftbench.execution.ray_backend import Resources, default_resources, slots

    cpu_node = [{"CPU": 16.0}]
    gpu_node = [{"CPU": 64.0, "GPU": 8.0}]
    assert default_resources(ExecutionConfig(backend="ray"), cpu_node) == Resources(1, 0)
    four = ExecutionConfig(backend="ray", max_concurrent=4)
    assert default_resources(four, cpu_node) == Resources(4, 0)  # an even share of 16 cores
    assert default_resources(four, [{"CPU": 2.0}]) == Resources(0.5, 0)  # 4 at once on 2
    assert default_resources(ExecutionConfig(backend="ray"), gpu_node) == Resources(8, 1)
    asked = ExecutionConfig(backend="ray", resources_per_run=RunResources(cpus=2, gpus=0))
    assert default_resources(asked, gpu_node) == Resources(2, 0)
    assert slots(gpu_node * 4, Resources(8, 1)) == 32  # a 4-node cluster of 8-GPU nodes
    assert slots([{"CPU": 2.0}, {"CPU": 1.0}], Resources(1, 0)) == 3
    assert slots([{"CPU": 64.0}], Resources(1, 1)) == 0  # a GPU asked of a CPU-only node
