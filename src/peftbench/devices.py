"""Memory budgets for `peftbench plan`: sizes such as "24GiB", and a small table of common GPUs."""

from __future__ import annotations

import re

from peftbench.errors import PeftbenchError

MIB = 2**20
# Total device memory as nvidia-smi reports it, in MiB (not the marketing GB).
GPUS_MIB = {
    "NVIDIA T4": 15_360,
    "NVIDIA L4": 23_034,
    "NVIDIA A10G": 23_028,
    "NVIDIA RTX 3090": 24_576,
    "NVIDIA RTX 4090": 24_564,
    "NVIDIA V100 16GB": 16_384,
    "NVIDIA V100 32GB": 32_768,
    "NVIDIA A100 40GB": 40_960,
    "NVIDIA A100 80GB": 81_920,
    "NVIDIA L40S": 46_068,
    "NVIDIA H100 80GB": 81_559,
    "NVIDIA H200": 143_771,
}
# What a process cannot give to tensors on a GPU: the CUDA context and kernels (~0.4-1 GiB,
# measured by NVML, not by the allocator), and the caching allocator's slack between the
# bytes it reserves and the bytes tensors use (typically 5-15% of the peak).
CUDA_CONTEXT_MIB = 600
ALLOCATOR_SLACK = 0.10
_UNITS = {"": 1, "b": 1, "k": 1e3, "kb": 1e3, "m": 1e6, "mb": 1e6, "g": 1e9, "gb": 1e9}
_UNITS |= {"kib": 2**10, "mib": 2**20, "gib": 2**30, "t": 1e12, "tb": 1e12, "tib": 2**40}


def parse_memory(text: str) -> float:
    """A memory size ("24GiB", "16 GB", "80000MiB") in MiB; one clear error otherwise."""
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*", text)
    unit = match.group(2).lower() if match else None
    if match is None or unit not in _UNITS or not unit or float(match.group(1)) <= 0:
        raise PeftbenchError(
            f"--memory {text!r} is not a memory size; accepted forms: a positive number with a "
            "unit, e.g. 24GiB, 16GB, 81920MiB, 0.5TiB (GiB/MiB are powers of 2, GB/MB of 10)"
        )
    return float(match.group(1)) * _UNITS[unit] / MIB


def gpu_memory(name: str) -> tuple[str, float]:
    """(canonical name, MiB) of a GPU in the table, matched case-insensitively and without the
    "NVIDIA " prefix; one clear error listing the known GPUs otherwise."""
    wanted = name.lower().removeprefix("nvidia").strip()
    for known, mib in GPUS_MIB.items():
        if known.lower().removeprefix("nvidia").strip() == wanted:
            return known, mib
    raise PeftbenchError(
        f"--gpu {name!r} is not in peftbench's table of GPUs; known: {', '.join(GPUS_MIB)}; "
        "or give the memory itself with --memory (e.g. --memory 24GiB)"
    )


def usable_for_tensors(device_mib: float) -> float:
    """Of a GPU's memory, what tensors can use: less the CUDA context and allocator slack."""
    return (device_mib - CUDA_CONTEXT_MIB) / (1 + ALLOCATOR_SLACK)
