"""When two methods' memory figures are too close to rank: run-to-run noise on memory.

A memory difference counts only when it exceeds the larger seed-to-seed std of the two methods
and a floor (1 % of the larger figure, at least 1 MiB) that stands for the run-to-run variation
a single seed cannot show (allocator rounding, library workspaces, a batch of another length).
Below that the methods are tied on memory: the cheapest pick, the bottom line and the Pareto
front do not rank them by it. Time and size figures are not judged here.
"""

from __future__ import annotations

from collections.abc import Sequence

from peftbench.report.runs import MethodStats

MEMORY_KEYS = frozenset(
    {
        "tensor_peak_mib",
        "peak_rss_mb",
        "cuda_peak_allocated_mb",
        "cuda_peak_reserved_mb",
        "nvml_peak_used_mb",
    }
)
FLOOR_FRACTION = 0.01
FLOOR_MIB = 1.0  # the MB of the memory columns are MiB as well (results.py)


def memory_noise(a: MethodStats, b: MethodStats, key: str) -> float | None:
    """The difference below which a and b are tied on memory figure `key` (MiB), or None when
    `key` is not a memory figure or either method lacks it."""
    x, y = a.mean.get(key), b.mean.get(key)
    if key not in MEMORY_KEYS or x is None or y is None:
        return None
    floor = max(FLOOR_MIB, FLOOR_FRACTION * max(abs(x), abs(y)))
    return max(floor, a.std.get(key, 0.0), b.std.get(key, 0.0))


def tied_on(a: MethodStats, b: MethodStats, key: str) -> bool:
    """Whether a and b differ on `key` by no more than its noise (always False off memory)."""
    noise = memory_noise(a, b, key)
    return noise is not None and abs(a.mean[key] - b.mean[key]) <= noise


def ties_note(pick: MethodStats, group: Sequence[MethodStats], key: str) -> tuple[str, list[str]]:
    """' Tied on memory with X (…): …' for the methods of `group` within noise of `pick`."""
    tied = [s for s in group if s is not pick and tied_on(s, pick, key)]
    if not tied:
        return "", []
    parts = [
        f"{s.name} ({s.mean[key]:,.0f}, a difference of {abs(s.mean[key] - pick.mean[key]):,.1f} "
        f"within the noise of {memory_noise(s, pick, key):,.1f})"
        for s in tied
    ]
    text = (
        f" Tied on memory with {', '.join(parts)} (MiB; noise = the larger seed-to-seed std, "
        f"at least {100 * FLOOR_FRACTION:g} % or {FLOOR_MIB:g} MiB): memory does not rank them."
    )
    return text, [s.name for s in tied]
