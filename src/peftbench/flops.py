"""Training FLOPs counted from the model's shapes, the device's peak FLOP/s, and MFU.

Per real (non-padding) token a weight matmul of N weights costs 2·N in the forward pass, 2·N for
the gradient of its input and 2·N for the gradient of its weight; frozen weights skip the last.
So full fine-tuning costs ~6·N per token and an adapter ~4·N_frozen + 6·N_trainable (see
../shared/docs/stack-notes.md, "FLOPs accounting"). Attention's score and value matmuls add
4·L·s·d per token in the forward pass and twice that in the backward. Heads that read one token
per sequence (classifier, pooler) count once per sequence. Counting real lengths leaves padding
out, so the FLOPs over the training time give model FLOPs utilisation (MFU).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from peft.tuners.adalora.layer import AdaLoraLayer
from peft.tuners.lora.layer import LoraLayer
from peft.tuners.lycoris_utils import LycorisLayer
from peft.tuners.tuners_utils import BaseTunerLayer
from peft.tuners.vera.layer import VeraLayer
from torch import nn
from transformers.pytorch_utils import Conv1D

from peftbench.measure import cpu_has_native_bf16, cpu_name

# Modules that run on one token per sequence (the first token or the pooled one).
PER_SEQUENCE_MODULES = {"classifier", "pre_classifier", "pooler"}
# PEFT's copy of a module it trains in full (the copy that runs is under `modules_to_save`),
# and the encoder of virtual tokens (runs once per batch, on those tokens only).
SKIPPED_MODULES = {"original_module", "prompt_encoder"}
# Dense bf16/fp16 tensor-core peak of common data-centre GPUs, in TFLOP/s (vendor datasheets);
# fp32 without TF32. Matched as substrings of torch.cuda.get_device_name.
DATASHEET_TFLOPS = {
    "H200": {"bf16": 989.0, "fp16": 989.0, "fp32": 67.0},
    "H100 80GB HBM3": {"bf16": 989.0, "fp16": 989.0, "fp32": 67.0},  # SXM
    "H100 PCIe": {"bf16": 756.0, "fp16": 756.0, "fp32": 51.0},
    "A100": {"bf16": 312.0, "fp16": 312.0, "fp32": 19.5},
}
DTYPE_NAMES = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}


@dataclass(frozen=True)
class ModelShape:
    """What the FLOPs depend on: matmul weights by role, and the attention's shape."""

    frozen: int  # per-token matmul weights without a weight gradient
    trainable: int  # per-token matmul weights with a weight gradient
    head_frozen: int  # matmuls run once per sequence (classifier, pooler)
    head_trainable: int
    layers: int
    hidden: int
    heads: int
    body_backward: bool = True  # False when only the head trains: no backward below it
    virtual_tokens: int = 0  # prepended to every sequence (prompt tuning, P-tuning)
    prefix_tokens: int = 0  # keys and values prepended in every attention layer (prefix tuning)
    train_rerun: int = 0  # frozen weights run a second time in training (DoRA with dropout)


@dataclass(frozen=True)
class PeakFlops:
    """A device's peak FLOP/s for one dtype, and where the number came from."""

    flops: float
    source: str
    datasheet: float | None = None  # the vendor's dense peak, where known


def _matmul_weights(module: nn.Module) -> int:
    if isinstance(module, nn.Linear):  # includes bitsandbytes Linear4bit (packed weight)
        return module.in_features * module.out_features
    if isinstance(module, Conv1D):  # GPT-2 style linear layers
        return module.weight.shape[0] * module.weight.shape[1]
    return 0


def _adapter_matmuls(module: nn.Module) -> tuple[int, int, int]:
    """(frozen, trainable, train-only frozen) per-token weights a PEFT layer uses beyond its
    nn.Linear children (LoRA's lora_A/lora_B are such children and are counted as leaves)."""
    if not isinstance(module, BaseTunerLayer):
        return 0, 0, 0
    base = module.get_base_layer()
    fan_in, fan_out = getattr(base, "in_features", 0), getattr(base, "out_features", 0)
    frozen = trainable = rerun = 0
    adapters = getattr(module, module.adapter_layer_names[0])
    for name in module.active_adapters:
        if name not in adapters:
            continue
        if isinstance(module, AdaLoraLayer):  # x @ (A·E)^T @ B^T
            trainable += module.lora_A[name].shape[0] * (fan_in + fan_out)
        elif isinstance(module, LoraLayer):
            # DoRA runs the base weight again on the dropped-out input while training.
            variant = type(module.lora_variant.get(name)).__name__
            dropout = module.lora_dropout[name]
            if variant.startswith("Dora") and not isinstance(dropout, nn.Identity):
                rerun += fan_in * fan_out
        elif isinstance(module, LycorisLayer):
            trainable += fan_in * fan_out  # LoHa/LoKr: input times the full delta weight
        elif isinstance(module, VeraLayer):
            frozen += module.r[name] * (fan_in + fan_out)  # shared frozen A, B
    return frozen, trainable, rerun


def _virtual_tokens(model: nn.Module) -> tuple[int, int]:
    """(prepended input tokens, prepended key/value tokens) of a prompt-learning PEFT model."""
    config = getattr(model, "active_peft_config", None)
    if config is None or not getattr(config, "is_prompt_learning", False):
        return 0, 0
    if str(config.peft_type.value) == "PREFIX_TUNING":
        return 0, config.num_virtual_tokens
    return config.num_virtual_tokens, 0


def model_shape(model: nn.Module) -> ModelShape:
    """Count the matmul weights of a model as prepared for training (plain, PEFT or 4-bit)."""
    counts = dict.fromkeys(("frozen", "trainable", "head_frozen", "head_trainable", "rerun"), 0)
    body_backward = False
    for name, module in model.named_modules():
        parts = set(name.split("."))
        if parts & SKIPPED_MODULES:
            continue
        head = "head_" if parts & PER_SEQUENCE_MODULES else ""
        if not head and any(p.requires_grad for p in module.parameters(recurse=False)):
            body_backward = True
        weights = _matmul_weights(module)
        if weights:
            counts[head + ("trainable" if module.weight.requires_grad else "frozen")] += weights
        frozen, trainable, rerun = _adapter_matmuls(module)
        counts[head + "frozen"] += frozen
        counts[head + "trainable"] += trainable
        counts["rerun"] += rerun
    virtual, prefix = _virtual_tokens(model)
    config = model.config
    return ModelShape(
        frozen=counts["frozen"],
        trainable=counts["trainable"],
        head_frozen=counts["head_frozen"],
        head_trainable=counts["head_trainable"],
        layers=config.num_hidden_layers,
        hidden=config.hidden_size,
        heads=config.num_attention_heads,
        body_backward=body_backward or virtual > 0 or prefix > 0,
        virtual_tokens=virtual,
        prefix_tokens=prefix,
        train_rerun=counts["rerun"],
    )


def real_lengths(attention_mask: torch.Tensor) -> list[int]:
    """The real (non-padding) length of each sequence of a batch."""
    return attention_mask.sum(dim=-1).tolist()


def _attention(shape: ModelShape, tokens: int) -> int:
    """Forward FLOPs of the score (Q·K^T) and value (P·V) matmuls of one sequence."""
    return 4 * shape.layers * shape.hidden * tokens * (tokens + shape.prefix_tokens)


def eval_flops(shape: ModelShape, lengths: Iterable[int]) -> int:
    """Forward FLOPs over sequences of these real lengths (no padding counted)."""
    total = 0
    for length in lengths:
        tokens = length + shape.virtual_tokens
        total += 2 * (shape.frozen + shape.trainable) * tokens + _attention(shape, tokens)
        total += 2 * (shape.head_frozen + shape.head_trainable)
    return total


def train_flops(shape: ModelShape, lengths: Iterable[int]) -> int:
    """Forward + backward FLOPs over sequences of these real lengths: one step or one epoch."""
    body = shape.frozen + shape.trainable
    # forward 2·N, input gradients 2·N (below the head only if something there trains),
    # weight gradients 2·N_trainable; DoRA's rerun of the base weight: forward + input gradient.
    per_token = 2 * body + 2 * shape.trainable + 4 * shape.train_rerun
    per_token += 2 * body if shape.body_backward else 0
    attention = 3 if shape.body_backward else 1
    per_sequence = 4 * shape.head_frozen + 6 * shape.head_trainable
    total = 0
    for length in lengths:
        tokens = length + shape.virtual_tokens
        total += per_token * tokens + attention * _attention(shape, tokens) + per_sequence
    return total


def mfu(train_flops: float, train_time_s: float, peak_flops: float) -> float:
    """Model FLOPs utilisation: achieved FLOP/s as a fraction of the peak."""
    if train_time_s <= 0 or peak_flops <= 0:
        raise ValueError(f"need positive time and peak, got {train_time_s} s, {peak_flops} FLOP/s")
    return train_flops / train_time_s / peak_flops


def flops_summary(
    shape: ModelShape,
    train_lengths: list[int],
    epochs: int = 1,
    eval_lengths: list[int] | None = None,
    train_time_s: float | None = None,
    peak: PeakFlops | None = None,
    eval_time_s: float | None = None,
) -> dict[str, Any]:
    """The record's FLOPs entry: matmul weights, FLOPs in total and per real token, MFU."""
    tokens = epochs * sum(train_lengths)
    total = epochs * train_flops(shape, train_lengths)
    summary: dict[str, Any] = {
        "matmul_params_frozen": shape.frozen,
        "matmul_params_trainable": shape.trainable,
        "head_matmul_params_frozen": shape.head_frozen,
        "head_matmul_params_trainable": shape.head_trainable,
        "layers": shape.layers,
        "hidden": shape.hidden,
        "heads": shape.heads,
        "train_tokens": tokens,
        "train_flops": total,
        "train_flops_per_token": total / tokens if tokens else None,
    }
    if eval_lengths is not None:
        eval_total = epochs * eval_flops(shape, eval_lengths)
        summary["eval_flops"] = eval_total
        summary["eval_flops_per_token"] = eval_total / (epochs * sum(eval_lengths) or 1)
    if peak is not None:
        summary["peak_flops"] = peak.flops
        summary["peak_flops_source"] = peak.source
        summary["peak_flops_datasheet"] = peak.datasheet
        if train_time_s:
            summary["mfu"] = mfu(total, train_time_s, peak.flops)
            if peak.datasheet:
                summary["mfu_datasheet"] = mfu(total, train_time_s, peak.datasheet)
        if eval_time_s and eval_lengths is not None:
            summary["eval_mfu"] = mfu(summary["eval_flops"], eval_time_s, peak.flops)
        _drop_impossible_mfu(summary)
    return summary


def _drop_impossible_mfu(summary: dict[str, Any]) -> None:
    """A run faster than the measured peak means the peak is wrong (the micro-benchmark ran
    while the machine was busy): no MFU then, and the record says why."""
    beaten = [name for name in ("mfu", "eval_mfu") if (summary.get(name) or 0) > 1.0]
    if beaten:
        best = max(summary[name] for name in beaten)
        for name in beaten:
            summary[name] = None
        summary["mfu_unavailable_because"] = (
            f"the run ran at {best:.0%} of the measured peak of {summary['peak_flops']:.3g} "
            "FLOP/s: that peak was measured while the machine was busy (the next run on "
            "this machine measures it again)"
        )


def default_cache_file() -> Path:
    """$PEFTBENCH_CACHE_DIR/peak_flops.json, else ~/.cache/peftbench/peak_flops.json."""
    directory = os.environ.get("PEFTBENCH_CACHE_DIR")
    base = Path(directory) if directory else Path.home() / ".cache" / "peftbench"
    return base / "peak_flops.json"


def _datasheet(device: torch.device, dtype: torch.dtype) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for model, peaks in DATASHEET_TFLOPS.items():
        if model in name and DTYPE_NAMES.get(dtype) in peaks:
            return peaks[DTYPE_NAMES[dtype]] * 1e12
    return None


def _measure_matmul(device: torch.device, dtype: torch.dtype, size: int, repeats: int) -> float:
    """Best FLOP/s of a size³ matmul on `device` over `repeats` timed batches.

    The operands come from a private generator: a measurement must never advance the global
    RNG, or a run's initialisation and dropout would depend on whether the peak was cached."""
    generator = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(size, size, device=device, generator=generator).to(dtype)
    b = torch.randn(size, size, device=device, generator=generator).to(dtype)
    per_batch = 10 if device.type == "cuda" else 1  # several kernels per timing on a GPU
    best = float("inf")
    for attempt in range(repeats + 1):  # the first is a warm-up
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        for _ in range(per_batch):
            torch.mm(a, b)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if attempt:
            best = min(best, (time.perf_counter() - start) / per_batch)
    del a, b
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)  # keep the benchmark out of the run's peak
    return 2 * size**3 / best


def _cpu_matmul_size(dtype: torch.dtype) -> int:
    """2048 where the CPU computes `dtype` at speed; 512 where it is emulated (bf16 without
    AVX-512 BF16 runs ~200x slower, and a 2048^3 measurement would take minutes). Decided by
    the CPU's flags, as preflight does, not by timing: the size is part of the cache key, and
    a timed probe on a busy machine picked another size, hence another key, now and then."""
    if dtype == torch.float32:
        return 2048
    return 2048 if dtype == torch.bfloat16 and cpu_has_native_bf16() else 512


def peak_flops(
    device: torch.device,
    dtype: torch.dtype = torch.float32,
    cache_file: Path | None = None,
    size: int | None = None,
    repeats: int = 5,
) -> PeakFlops:
    """Measured matmul peak of `device` for `dtype`, cached per machine, threads and torch."""
    size = size or _default_size(device, dtype)
    key, how = _peak_key(device, dtype, size)
    path = Path(cache_file) if cache_file else default_cache_file()
    cache = _read_cache(path)
    if key not in cache:
        cache[key] = {
            "flops": _measure_matmul(device, dtype, size, repeats),
            "source": f"measured: {how}, best of {repeats}",
            "datasheet": _datasheet(device, dtype),
            "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        _write_cache(path, cache)
    entry = cache[key]
    return PeakFlops(entry["flops"], entry["source"], entry["datasheet"])


def forget_peak_flops(
    device: torch.device, dtype: torch.dtype, cache_file: Path | None = None
) -> None:
    """Drop a cached peak that a run beat, so that the next run measures it again."""
    size = _default_size(device, dtype)
    path = Path(cache_file) if cache_file else default_cache_file()
    cache = _read_cache(path)
    if cache.pop(_peak_key(device, dtype, size)[0], None) is not None:
        _write_cache(path, cache)


def _default_size(device: torch.device, dtype: torch.dtype) -> int:
    """The side of the square matmul that measures a device's peak."""
    return 8192 if device.type == "cuda" else _cpu_matmul_size(dtype)


def _peak_key(device: torch.device, dtype: torch.dtype, size: int) -> tuple[str, str]:
    """The cache key of a peak (machine, threads, dtype, torch, size) and how it is measured."""
    dtype_name = DTYPE_NAMES.get(dtype, str(dtype).removeprefix("torch."))
    if device.type == "cuda":
        hardware = f"cuda:{torch.cuda.get_device_name(device)}"
        how = f"{size}^3 {dtype_name} matmul"
    else:
        threads = torch.get_num_threads()
        hardware = f"cpu:{cpu_name()}|{threads} threads"
        how = f"{size}^3 {dtype_name} matmul, {threads} threads"
    return f"{hardware}|{dtype_name}|torch {torch.__version__}|{size}^3", how


def _read_cache(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _write_cache(path: Path, cache: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as f:
        json.dump(cache, f, indent=1)
    os.replace(f.name, path)
