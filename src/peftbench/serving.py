"""The cost of serving a trained model: latency per example at batch 1, throughput at the eval
batch size, and the tensor memory to serve, for the adapter as trained (unmerged) and merged
into its base (PEFT's `merge_and_unload`) where that is possible.

Merging is not possible, and the record says why, for prompt methods (prompt tuning, P-tuning,
prefix tuning: the virtual tokens are inputs, not weight deltas), for adapters on a 4-bit base
(merging would re-quantise the weights and change them), and is not needed for methods that
train the model's own tensors (full, BitFit, linear probe); every other adapter merges (see
`merge` for the PEFT 0.21 bug it works around). Measured on a few test examples
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
from peftbench.interrupts import raise_if_interrupted
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
) -> tuple[dict[str, float], torch.Tensor]:
    """Latency (s per example, batch 1, median), throughput (examples/s at `batch_size`),
    serving tensor memory (MiB: weights + peak of a batch), and the logits (fp32, on CPU)."""
    model.eval()
    indices = list(range(min(examples, len(split))))
    tracker = TensorMemoryTracker(model)
    logits: list[torch.Tensor] = []
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
                output = model(**_inputs(split, part, pad_token_id, device))
                logits.append(output.logits.float().cpu())
        synchronize(device)
        elapsed = time.perf_counter() - start
    peak = tracker.peaks()["serve"]
    return {
        "latency_s_per_example_batch1": statistics.median(latencies),
        "throughput_examples_per_s": len(indices) / elapsed if elapsed else None,
        "tensor_peak_mib": round(peak["total_mib"], 3),
        "weights_mib": round(peak["frozen_weights"] + peak["trainable_weights"], 3),
    }, torch.cat(logits)


def merge(model: nn.Module) -> nn.Module:
    """The adapter merged into its base, as a plain Transformers model.

    The trained head (PEFT's `modules_to_save` wrappers) is unwrapped first, with PEFT's own
    `unload_and_optionally_merge_module`: PEFT 0.21.2's generic `BaseTuner._replace_module`
    (used by IA3, VeRA, LoHa and LoKr; LoRA overrides it) copies `child.weight` onto every
    unloaded module, and a head without a `.weight` of its own (RobertaClassificationHead,
    BertPooler) makes `merge_and_unload` raise AttributeError ("'BertPooler' object has no
    attribute 'weight'"). Once unwrapped, only the adapter layers are left to merge.
    """
    from peft.utils.other import ModulesToSaveWrapper

    for name, module in list(model.named_modules()):
        if isinstance(module, ModulesToSaveWrapper):
            parent_name, _, child = name.rpartition(".")
            unwrapped = module.unload_and_optionally_merge_module(False, False, None)
            setattr(model.get_submodule(parent_name), child, unwrapped)
    return model.merge_and_unload()


def _inputs(
    split: TokenizedSplit, indices: list[int], pad_token_id: int, device: torch.device
) -> dict[str, torch.Tensor]:
    raise_if_interrupted()  # before each batch: a Ctrl-C the tracker's finalizers dropped
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
    """The record's `serving` entry: unmerged and (where possible) merged costs, whether the
    merged model predicts exactly what the unmerged one does, and the largest difference of
    their logits (rounding: at bf16 it can reach 1e-2, enough to flip a near-tie example)."""
    unmerged, logits = measure_serving(
        model, split, pad_token_id, batch_size, device, autocast, examples
    )
    result: dict[str, Any] = {"examples": len(logits), "unmerged": unmerged, "merged": None}
    reason = why_not_mergeable(model, merge_blocker)
    result["not_merged_because"] = reason
    if reason is None:
        try:
            merged_model = merge(copy.deepcopy(model))
        except Exception as exc:  # noqa: BLE001 - a PEFT limitation, recorded as such
            result["not_merged_because"] = f"PEFT's merge_and_unload failed: {exc}"[:300]
            return result
        merged, merged_logits = measure_serving(
            merged_model, split, pad_token_id, batch_size, device, autocast, examples
        )
        result["merged"] = merged
        differ = int((merged_logits.argmax(-1) != logits.argmax(-1)).sum())
        result["merged_predictions_agree"] = differ == 0
        result["merged_predictions_differ"] = differ  # of `examples`
        result["merged_max_logit_difference"] = float((merged_logits - logits).abs().max())
        del merged_model
    return result
