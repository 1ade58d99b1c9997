"""Serving cost (peftbench.serving): latency, throughput and memory, merged vs unmerged; merged
adapters predict exactly what the unmerged ones do, and where merging is impossible the record
says why."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import pytest
import torch
from test_memory import _model, prepare_tiny

from peftbench.data import PreparedData
from peftbench.serving import serving_cost

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def prepared(tiny_roberta: Path, tiny_dataset: Path, tmp_path_factory: Any) -> PreparedData:
    return prepare_tiny(tiny_roberta, tiny_dataset, tmp_path_factory.mktemp("cache"))


def _serve(model_dir: Path, name: str, data: PreparedData) -> dict:
    method, params, model = _model(model_dir, name)
    # Move every trained tensor off its initial value so that a merge has something to merge.
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.requires_grad:
                parameter.add_(0.05 * torch.randn_like(parameter))
    return serving_cost(
        model,
        method.merge_blocker(params),
        data.test,
        data.pad_token_id,
        8,
        CPU,
        contextlib.nullcontext(),
        examples=16,
    )


@pytest.mark.parametrize("name", ["lora", "dora", "rslora"])
def test_merged_adapters_predict_what_unmerged_ones_do(
    tiny_roberta: Path,
    prepared: PreparedData,
    name: str,
) -> None:
    result = _serve(tiny_roberta, name, prepared)
    assert result["not_merged_because"] is None
    assert result["merged_predictions_agree"] is True
    for variant in ("unmerged", "merged"):
        cost = result[variant]
        assert cost["latency_s_per_example_batch1"] > 0
        assert cost["throughput_examples_per_s"] > 0
        assert cost["tensor_peak_mib"] > cost["weights_mib"] > 0
    # Merged, the adapter's own tensors are gone: fewer weights to hold.
    assert result["merged"]["weights_mib"] < result["unmerged"]["weights_mib"]


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("prompt_tuning", "prompt method"),
        ("qlora", "4-bit base"),
        ("full", "nothing to merge"),
        # PEFT 0.21's IA3 and LoHa merges trip over the trained classification head.
        ("ia3", "merge_and_unload failed"),
        ("loha", "merge_and_unload failed"),
    ],
)
def test_where_merging_is_impossible_the_record_says_why(
    tiny_roberta: Path,
    prepared: PreparedData,
    name: str,
    reason: str,
) -> None:
    result = _serve(tiny_roberta, name, prepared)
    assert result["merged"] is None
    assert reason in result["not_merged_because"]
    assert result["unmerged"]["throughput_examples_per_s"] > 0
