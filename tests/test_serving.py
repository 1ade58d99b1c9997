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
from peftbench.methods import method_names
from peftbench.serving import serving_cost

CPU = torch.device("cpu")


_PREPARED: dict[Path, PreparedData] = {}


def _prepared(model_dir: Path, data_dir: Path, tmp_path_factory: Any) -> PreparedData:
    """The tiny data tokenised for one tiny model (once per model and session)."""
    if model_dir not in _PREPARED:
        _PREPARED[model_dir] = prepare_tiny(model_dir, data_dir, tmp_path_factory.mktemp("cache"))
    return _PREPARED[model_dir]


@pytest.fixture
def prepared(tiny_roberta: Path, tiny_dataset: Path, tmp_path_factory: Any) -> PreparedData:
    return _prepared(tiny_roberta, tiny_dataset, tmp_path_factory)


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


# Why a method is not merged, by kind: nothing else may stop a merge.
NOT_MERGED = ("prompt method", "4-bit base", "nothing to merge")


# Every method on RoBERTa; on BERT (whose trained head includes the pooler) the adapters
# whose merge needed the head unwrapped, and LoRA beside them.
CASES = [("tiny_roberta", name) for name in method_names()] + [
    ("tiny_bert", name) for name in ("lora", "ia3", "vera", "loha", "lokr")
]


@pytest.mark.parametrize(("model_fixture", "name"), CASES)
def test_every_adapter_merges_and_predicts_what_it_does_unmerged(
    request: pytest.FixtureRequest,
    tiny_dataset: Path,
    tmp_path_factory: Any,
    name: str,
    model_fixture: str,
) -> None:
    """PEFT 0.21's merge_and_unload refused IA3, VeRA, LoHa and LoKr here (their trained head
    has no .weight); serving.merge unwraps the head first, so every adapter merges."""
    model_dir = request.getfixturevalue(model_fixture)
    data = _prepared(model_dir, tiny_dataset, tmp_path_factory)
    result = _serve(model_dir, name, data)
    reason = result["not_merged_because"]
    if reason is not None:
        assert reason.startswith(NOT_MERGED), reason
        assert result["merged"] is None
        return
    assert result["merged_predictions_agree"] is True
    assert result["merged_predictions_differ"] == 0
    assert result["merged_max_logit_difference"] < 1e-4  # fp32: rounding only
    for variant in ("unmerged", "merged"):
        cost = result[variant]
        assert cost["latency_s_per_example_batch1"] > 0
        assert cost["throughput_examples_per_s"] > 0
        assert cost["tensor_peak_mib"] > cost["weights_mib"] > 0
    # Merged, the adapter's own tensors are gone: fewer weights to hold.
    assert result["merged"]["weights_mib"] < result["unmerged"]["weights_mib"]


def test_the_adapters_that_peft_refused_to_merge_now_merge(
    tiny_roberta: Path, prepared: PreparedData
) -> None:
    for name in ("ia3", "vera", "loha", "lokr"):
        assert _serve(tiny_roberta, name, prepared)["not_merged_because"] is None, name


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("prompt_tuning", "prompt method"),
        ("prefix_tuning", "prompt method"),
        ("qlora", "4-bit base"),
        ("full", "nothing to merge"),
        ("bitfit", "nothing to merge"),
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
