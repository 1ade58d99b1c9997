"""Rankings, Pareto fronts, noise levels and figures in words: pure functions, no I/O.

Every figure is keyed by a `report.columns.COLUMNS` key and read in the direction that column
declares (`higher_is_better`), so the Pareto front and rankings never restate which way is
better. Accuracies are fractions in [0, 1]; 0.01 is one percentage point (pp).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping, Sequence

from peftbench.report.columns import COLUMNS_BY_KEY
from peftbench.report.runs import MethodStats

ACCURACY = "accuracy"
Z_95 = 1.96  # two-sided 95 % normal quantile
UNITS = {
    "trainable_params": "",
    "train_time_s": " s",
    "eval_time_per_eval_s": " s",
    "eval_examples_per_s": " examples/s",
    "model_size_mb": " MiB",
    "tensor_peak_mib": " MiB",
    "peak_rss_mb": " MiB",
    "cuda_peak_allocated_mb": " MiB",
    "cuda_peak_reserved_mb": " MiB",
    "nvml_peak_used_mb": " MiB",
    "train_tokens_per_s": " tokens/s",
}


def _better(key: str) -> bool:
    """Whether higher is better for a COLUMNS key; a ValueError for non-figures."""
    direction = COLUMNS_BY_KEY[key].higher_is_better
    if direction is None:
        raise ValueError(f"column {key!r} is not a figure of merit")
    return direction


def _oriented(value: float, key: str) -> float:
    """The value turned so that larger is always better."""
    return value if _better(key) else -value


def rank(points: Mapping[str, Mapping[str, float | None]], key: str) -> list[str]:
    """Names best first by one column; points without that figure are left out; ties keep order."""
    _better(key)
    present = [name for name, figures in points.items() if figures.get(key) is not None]
    return sorted(present, key=lambda name: -_oriented(points[name][key], key))  # type: ignore[arg-type]


def dominates(
    a: Mapping[str, float],
    b: Mapping[str, float],
    keys: Sequence[str],
    tied: Collection[str] = (),
) -> bool:
    """Whether `a` is at least as good as `b` in every key and strictly better in one; keys in
    `tied` count as equal (a difference within its noise)."""
    pairs = [(_oriented(a[k], k), _oriented(b[k], k)) for k in keys if k not in tied]
    return all(x >= y for x, y in pairs) and any(x > y for x, y in pairs)


def pareto_front(
    points: Mapping[str, Mapping[str, float | None]],
    keys: Sequence[str],
    ties: Callable[[str, str, str], bool] | None = None,
) -> list[str]:
    """Names no other point dominates over `keys`, in input order; incomplete points left out.
    `ties(a, b, key)` says where two points' difference on a key is within its noise."""
    for key in keys:
        _better(key)
    complete = {
        name: {k: float(figures[k]) for k in keys}  # type: ignore[arg-type]
        for name, figures in points.items()
        if all(figures.get(k) is not None for k in keys)
    }
    return [
        name
        for name, figures in complete.items()
        if not any(
            dominates(other, figures, keys, [k for k in keys if ties and ties(o, name, k)])
            for o, other in complete.items()
            if o != name
        )
    ]


def binomial_half_width(p: float, n: int) -> float:
    """Half-width of the normal-approximation 95 % interval of an accuracy p measured on n items."""
    if n <= 0:
        raise ValueError("n must be positive")
    return Z_95 * math.sqrt(max(p * (1.0 - p), 0.0) / n)


def accuracy_noise(stats: MethodStats) -> float | None:
    """Noise level of a method's accuracy: the binomial half-width or the seed std, the larger."""
    accuracy = stats.mean.get(ACCURACY)
    if accuracy is None:
        return None
    levels = [stats.std[ACCURACY]] if ACCURACY in stats.std else []
    if stats.test_size:
        levels.append(binomial_half_width(accuracy, stats.test_size))
    return max(levels) if levels else None


def pp(fraction: float) -> str:
    """A fraction as percentage points, two decimals."""
    return f"{100 * fraction:.2f} pp"


def percent(fraction: float) -> str:
    """A fraction as a percentage, two decimals."""
    return f"{100 * fraction:.2f} %"


def fmt_figure(key: str, value: float) -> str:
    """A figure with its unit, e.g. '4,120 MiB' or '420.0 s'."""
    if key in (ACCURACY, "macro_f1"):
        return percent(value)
    if key == "model_size_mb":
        return f"{value:,.2f} MiB"
    if key in ("train_time_s", "eval_time_per_eval_s"):
        return f"{value:,.1f} s"
    return f"{value:,.0f}{UNITS.get(key, '')}"


def cost_label(key: str) -> str:
    """The column label without its unit suffix, e.g. 'peak CUDA allocated'."""
    return COLUMNS_BY_KEY[key].label.split(" (")[0]


def join_words(items: Sequence[str]) -> str:
    """'', 'a', 'a and b', 'a, b and c': a list as a sentence reads it."""
    if not items:
        return ""
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"
