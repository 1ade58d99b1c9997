"""On a node with GPUs, each Ray run sees only its own device.

No GPU here: the embedded Ray declares two logical GPUs, which Ray hands out exactly as it does
real ones (its own ids per task, CUDA_VISIBLE_DEVICES set in the worker before our code runs).
The runs train on the CPU (torch sees no CUDA), and each record says which devices the run was
given (`run_info.execution.cuda_visible_devices`). What a real GPU adds, CUDA itself honouring
that variable, is CUDA's contract, checked by benchmarks/gpu_check.py on a GPU machine.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import embedded_ray, tiny_config, write_config

from peftbench.cli import main
from peftbench.results import load_records

ray = pytest.importorskip("ray")
# With the other Ray files on one xdist worker: one Ray instance at a time.
pytestmark = pytest.mark.xdist_group("ray")


@pytest.fixture()
def ray_with_two_gpus():
    with embedded_ray("pb-gpus-", num_gpus=2):
        yield


def test_each_run_sees_only_its_own_gpu(
    ray_with_two_gpus, tiny_roberta: Path, tiny_dataset: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    raw = tiny_config(
        tiny_roberta,
        tiny_dataset,
        out,
        training={"epochs": 1, "train_batch_size": 16, "eval_batch_size": 32, "max_length": 48},
        methods={"lora": {"learning_rate": 5e-3}},
        seeds=[0, 1],
        execution={"backend": "ray"},  # default resources: one GPU per run where there are GPUs
    )
    raw["data"] = {**raw["data"], "train_size": 64, "test_size": 32}
    config = write_config(raw, tmp_path / "c.yaml")
    assert main(["run", str(config)]) == 0

    records = load_records(out)[0]
    assert len(records) == 2 and all(r["status"] == "success" for r in records)
    visible = [r["run_info"]["execution"]["cuda_visible_devices"] for r in records]
    assert all(devices in ("0", "1") for devices in visible), visible  # one device each
    spans = sorted(tuple(r["run_info"]["execution"]["process_span_s"]) for r in records)
    assert spans[1][0] < spans[0][1]  # the two ran at the same time ...
    assert sorted(visible) == ["0", "1"]  # ... each on its own device
