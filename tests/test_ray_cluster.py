"""A study on a two-node Ray cluster simulated on this machine, and a node without shared storage.

The cluster is real: `ray start --head` and a second `ray start --address` with its own CPU,
its own custom resource and its own temporary directory (its "local disk"). Both are stopped
by ending the process groups this test started, never with `ray stop` (which would end every
Ray on the machine).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from conftest import REPO, tiny_config, write_config

from peftbench.config import parse_config
from peftbench.data import prepare_data
from peftbench.execution.ray_backend import write_result
from peftbench.execution.remote import run_remote
from peftbench.execution.schedule import make_spec
from peftbench.models import load_tokenizer
from peftbench.results import load_records

ray = pytest.importorskip("ray")
# make test runs two xdist workers: one of them takes both Ray files, one test after another,
# since two Ray instances at once would compete for the CPUs that each test reserves.
pytestmark = pytest.mark.xdist_group("ray")
RAY = str(Path(sys.executable).with_name("ray"))
SHORT = {"epochs": 1, "train_batch_size": 16, "eval_batch_size": 32, "max_length": 48}


def _stop(process: subprocess.Popen) -> None:
    """End a `ray start --block` and every process of its group (gently, then for sure)."""
    for sig, wait_s in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            continue
        if sig == signal.SIGTERM:
            time.sleep(1)  # its daemons may outlive it by a moment: make sure
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return


def _wait_for_nodes(address: str, count: int, env: dict, timeout_s: int = 240) -> None:
    script = (
        "import ray, sys, time\n"
        f"ray.init(address={address!r}, logging_level='ERROR')\n"
        f"deadline = time.time() + {timeout_s}\n"
        f"while sum(n['Alive'] for n in ray.nodes()) < {count}:\n"
        "    assert time.time() < deadline, ray.nodes()\n"
        "    time.sleep(0.5)\n"
    )
    subprocess.run([sys.executable, "-c", script], env=env, check=True, timeout=timeout_s + 60)


@pytest.fixture()
def two_nodes(tmp_path: Path):
    """A head with 1 CPU and a second node with 1 CPU, each with its own temp dir."""
    port = _free_port()
    ip = ray.util.get_node_ip_address()
    address = f"{ip}:{port}"
    # Short paths: Ray's socket names must fit in 107 characters.
    temp_dirs = [tempfile.mkdtemp(prefix="pb-node", dir="/tmp") for _ in range(2)]
    env = {
        **os.environ,
        "RAY_AUTH_MODE": "token",  # the cluster's token: ~/.ray/auth_token, made by the head
        "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")]),
    }
    common = ["--block", "--num-cpus=1", "--disable-usage-stats"]
    nodes = []
    try:
        head = [RAY, "start", "--head", f"--port={port}", "--include-dashboard=false"]
        nodes.append(
            subprocess.Popen(
                [*head, *common, f"--temp-dir={temp_dirs[0]}"],
                env=env,
                start_new_session=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        _wait_for_nodes(address, 1, env)
        second = [RAY, "start", f"--address={address}", '--resources={"second_node": 1}']
        nodes.append(
            subprocess.Popen(
                [*second, *common, f"--temp-dir={temp_dirs[1]}"],
                env={**env, "TMPDIR": temp_dirs[1]},  # its "local disk"
                start_new_session=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        _wait_for_nodes(address, 2, env)
        yield address, env
    finally:
        for node in reversed(nodes):
            _stop(node)
        for directory in temp_dirs:
            shutil.rmtree(directory, ignore_errors=True)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_study_runs_across_two_nodes_and_every_record_lands_in_output_dir(
    two_nodes, tiny_roberta: Path, tiny_dataset: Path, tmp_path: Path
) -> None:
    address, env = two_nodes
    out = tmp_path / "out"
    methods = {"lora": {"learning_rate": 5e-3}, "ia3": {"learning_rate": 2e-2}}
    raw = tiny_config(tiny_roberta, tiny_dataset, out, training=SHORT, methods=methods)
    raw["data"] = {**raw["data"], "train_size": 64, "test_size": 32}
    raw["execution"] = {"backend": "ray", "address": address}
    config = write_config(raw, tmp_path / "c.yaml")
    result = subprocess.run(
        [sys.executable, "-m", "peftbench.cli", "run", str(config)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Ray: 2 node(s)" in result.stdout and "2 at once" in result.stdout
    records = load_records(out)[0]
    assert sorted(r["run_id"] for r in records) == ["ia3-seed0", "lora-seed0"]
    nodes = {r["run_info"]["execution"]["node_id"] for r in records}
    assert len(nodes) == 2  # one run on each node (each has room for one)
    for record in records:
        assert record["status"] == "success"
        run_dir = out / "runs" / record["run_id"]
        assert (run_dir / "predictions.json").exists() and (run_dir / "log.txt").exists()


def test_a_node_without_the_shared_storage_returns_its_files_to_the_driver(
    tiny_roberta: Path, tiny_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """run_remote on a node that cannot read the driver's storage marker: it trains in its
    own local directory and returns record, predictions, log and model to the driver."""
    node_disk = tmp_path / "node-local"
    node_disk.mkdir()
    monkeypatch.setenv("TMPDIR", str(node_disk))
    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read TMPDIR
    out = tmp_path / "out"
    raw = tiny_config(
        tiny_roberta, tiny_dataset, out, training=SHORT, methods={"ia3": {"learning_rate": 2e-2}}
    )
    raw["data"] = {**raw["data"], "train_size": 64, "test_size": 32}
    config = parse_config(raw)
    prepared, cache = prepare_data(
        config.data, load_tokenizer(config.model), "tiny", 48, tmp_path / "cache"
    )
    entry = config.methods[0]
    spec = make_spec(config, entry, entry.params, 0, "ia3-seed0", cache)
    result = run_remote(
        spec, prepared, None, str(out / "runs" / "ia3-seed0"), str(out / ".marker"), "token"
    )
    assert not result.shared and result.model_files
    assert not out.exists()  # the worker wrote nothing where the driver keeps results
    assert str(node_disk) in result.model_dir
    write_result(spec, result)
    run_dir = out / "runs" / "ia3-seed0"
    record = json.loads((run_dir / "record.json").read_text())
    assert record["status"] == "success"
    assert record["run_info"]["execution"]["shared_storage"] is False
    assert record["run_info"]["execution"]["model_dir"] == str(run_dir / "model")
    saved = sorted(p.name for p in (run_dir / "model").rglob("*") if p.is_file())
    assert saved == sorted(Path(name).name for name in result.model_files)
    assert json.loads((run_dir / "predictions.json").read_text())["run_id"] == "ia3-seed0"
    assert "epoch 1: train loss" in (run_dir / "log.txt").read_text()
