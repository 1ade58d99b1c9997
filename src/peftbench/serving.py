"""The cost of serving a trained model: latency per example at batch 1, throughput at the eval
batch size, and the tensor memory to serve, for the adapter as trained (unmerged) and merged
into its base (PEFT's `merge_and_unload`) where that is possible.

Merging is not possible, and the record says why, for prompt methods (prompt tuning, P-tuning,
prefix tuning: the virtual tokens are inputs, not weight deltas), for adapters on a 4-bit base
(merging would re-quantise the weights and change them), and is not needed for methods that
train the model's own tensors (full, BitFit, linear probe). Measured on a few test examples
(`examples`), in evaluation mode without gradients; nothing here draws random numbers.
"""

from __future__ import annotations

import copy
import statistics
import time
from typing import Any

import torch
from torch import nn

from peftbench.data import TokenizedSplit, collate
from peftbench.loop import synchronize
from peftbench.memory import TensorMemoryTracker

SERVING_EXAMPLES = 32


def why_not_mergeable(model: nn.Module, blocker: str | None) -> str | None:
    """None when `merge_and_unload` applies; else the reason, for the record. `blocker`: the
    method's reason for this run (Method.merge_blocker), if it has one."""
    if blocker is not None:
        return blocker
    if not hasattr(model, "merge_and_unload"):
        return "nothing to merge: the method trains the model's own tensors"
    return None


def measure_serving(
    model: nn.Module,
    split: TokenizedSplit,
    pad_token_id: int,
    batch_size: int,
    device: torch.device,
    autocast: Any,
    examples: int = SERVING_EXAMPLES,
) -> tuple[dict[str, float], list[int]]:
    """Latency (s per example, batch 1, median), throughput (examples/s at `batch_size`),
    serving tensor memory (MiB: weights + peak of a batch), and the predictions."""
    model.eval()
    indices = list(range(min(examples, len(split))))
    tracker = TensorMemoryTracker(model)
    predictions: list[int] = []
    latencies = []
    with torch.no_grad(), autocast:
        for index in indices[: max(1, len(indices) // 4)]:
            batch = _inputs(split, [index], pad_token_id, device)
            synchronize(device)
            start = time.perf_counter()
            model(**batch)
            synchronize(device)
            latencies.append(time.perf_counter() - start)
        synchronize(device)
        start = time.perf_counter()
        with tracker.measure("serve"):
            for begin in range(0, len(indices), batch_size):
                part = indices[begin : begin + batch_size]
                logits = model(**_inputs(split, part, pad_token_id, device)).logits
                predictions += logits.argmax(-1).tolist()
        synchronize(device)
        elapsed = time.perf_counter() - start
    peak = tracker.peaks()["serve"]
    return {
        "latency_s_per_example_batch1": statistics.median(latencies),
        "throughput_examples_per_s": len(indices) / elapsed if elapsed else None,
        "tensor_peak_mib": round(peak["total_mib"], 3),
        "weights_mib": round(peak["frozen_weights"] + peak["trainable_weights"], 3),
    }, predictions


def _inputs(
    split: TokenizedSplit, indices: list[int], pad_token_id: int, device: torch.device
) -> dict[str, torch.Tensor]:
    batch = collate(split, indices, pad_token_id, None)
    batch.pop("labels", None)
    return {key: value.to(device) for key, value in batch.items()}


def serving_cost(
    model: nn.Module,
    merge_blocker: str | None,
    split: TokenizedSplit,
    pad_token_id: int,
    batch_size: int,
    device: torch.device,
    autocast: Any,
    examples: int = SERVING_EXAMPLES,
) -> dict[str, Any]:
    """The record's `serving` entry: unmerged and (where possible) merged costs, and whether the
    merged model predicts exactly what the unmerged one does."""
    unmerged, predicted = measure_serving(
        model, split, pad_token_id, batch_size, device, autocast, examples
    )
    result: dict[str, Any] = {"examples": len(predicted), "unmerged": unmerged, "merged": None}
    reason = why_not_mergeable(model, merge_blocker)
    result["not_merged_because"] = reason
    if reason is None:
        try:
            merged_model = copy.deepcopy(model).merge_and_unload()
        except Exception as exc:  # noqa: BLE001 - a PEFT limitation, recorded as such
            result["not_merged_because"] = f"PEFT's merge_and_unload failed: {exc}"[:300]
            return result
        merged, merged_predictions = measure_serving(
            merged_model, split, pad_token_id, batch_size, device, autocast, examples
        )
        result["merged"] = merged
        result["merged_predictions_agree"] = merged_predictions == predicted
        del merged_model
    return result
