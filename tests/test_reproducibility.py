"""Same seed, same result: nothing that measures or caches may change a run's random stream."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tiny_config, write_config

from peftbench.cli import main
from peftbench.flops import default_cache_file, peak_flops
from peftbench.results import read_record


def _global_rng_states() -> tuple:
    return (torch.get_rng_state(), random.getstate(), np.random.get_state()[1].copy())


def test_measuring_the_peak_leaves_every_global_random_stream_untouched(tmp_path: Path) -> None:
    torch.manual_seed(123)
    before = _global_rng_states()
    peak = peak_flops(torch.device("cpu"), torch.float32, tmp_path / "peak.json", 64, 1)
    after = _global_rng_states()
    assert peak.flops > 0 and (tmp_path / "peak.json").exists()  # it did measure, cold
    assert torch.equal(before[0], after[0])
    assert before[1] == after[1]
    assert np.array_equal(before[2], after[2])


def _run(tmp_path: Path, model: Path, data: Path, out: str) -> tuple[dict, list[int]]:
    raw = tiny_config(
        model,
        data,
        tmp_path / out,
        methods={"lora": {"learning_rate": 5e-3}},
        training={**tiny_config(model, data, tmp_path)["training"], "epochs": 1},
    )
    config = write_config(raw, tmp_path / f"{out}.yaml")
    assert main(["run", str(config)]) == 0
    run_dir = tmp_path / out / "runs" / "lora-seed0"
    predictions = json.loads((run_dir / "predictions.json").read_text())["predictions"]
    return read_record(run_dir / "record.json"), predictions


def test_a_seeded_run_gives_the_same_result_with_a_cold_or_a_warm_cache(
    tiny_roberta: Path, tiny_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The peak FLOP/s cache is measured by the first run on a machine; the run's workers are
    # spawned processes, which inherit this environment.
    monkeypatch.setenv("PEFTBENCH_CACHE_DIR", str(tmp_path / "empty-cache"))
    assert not default_cache_file().exists()
    cold, cold_predictions = _run(tmp_path, tiny_roberta, tiny_dataset, "cold")
    assert default_cache_file().exists()
    warm, warm_predictions = _run(tmp_path, tiny_roberta, tiny_dataset, "warm")

    assert cold["config_hash"] == warm["config_hash"]
    assert [e["train_loss"] for e in cold["train_info"]["epochs"]] == [
        e["train_loss"] for e in warm["train_info"]["epochs"]
    ]
    assert cold["metrics"] == warm["metrics"]
    assert cold_predictions == warm_predictions
