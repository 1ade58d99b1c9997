"""Statistics for telling real differences from noise: intervals, paired tests, Holm correction.

Pure functions of numpy arrays, no I/O and no global state: every random draw comes from a
`numpy.random.Generator` built from the `seed` argument, so the same inputs and seed give the
same numbers on every machine with the same numpy.

Bootstraps resample test examples with replacement. A classification metric depends on a
sample only through its confusion matrix, and resampling n examples with replacement gives
confusion-matrix counts distributed Multinomial(n, observed cell counts / n). The bootstraps
here draw those counts directly: the same distribution as resampling example indices, in
O(resamples x classes²) time instead of O(resamples x n).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats as scipy_stats

DEFAULT_RESAMPLES = 1000
DEFAULT_LEVEL = 0.95
DEFAULT_ALPHA = 0.05
METRICS = ("accuracy", "macro_f1")

Seed = int | Sequence[int] | np.random.Generator | None


@dataclass(frozen=True)
class Interval:
    """A point estimate and a two-sided interval [low, high] at confidence `level`."""

    estimate: float
    low: float
    high: float
    level: float

    @property
    def half_width(self) -> float:
        """Half the interval's length."""
        return (self.high - self.low) / 2

    def contains(self, value: float) -> bool:
        """Whether value lies in the closed interval."""
        return self.low <= value <= self.high


@dataclass(frozen=True)
class McNemar:
    """McNemar's exact test: discordant counts and the two-sided p-value."""

    b: int  # examples A got right and B got wrong
    c: int  # examples A got wrong and B got right
    p_value: float


@dataclass(frozen=True)
class PairedBootstrap:
    """Paired bootstrap of accuracy(A) - accuracy(B): estimate, interval and two-sided p."""

    difference: float
    low: float
    high: float
    level: float
    p_value: float
    resamples: int

    @property
    def interval(self) -> Interval:
        """The difference as an Interval."""
        return Interval(self.difference, self.low, self.high, self.level)


def _rng(seed: Seed) -> np.random.Generator:
    """A generator of its own for this call (a Generator passed in is used as it is)."""
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def _check_level(level: float) -> None:
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")


def _check_resamples(resamples: int) -> None:
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, got {resamples}")


def _pair(labels: ArrayLike, predictions: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Labels and predictions as 1-d integer arrays of one non-zero length."""
    y, p = np.asarray(labels), np.asarray(predictions)
    if y.ndim != 1 or p.shape != y.shape:
        raise ValueError(f"labels {y.shape} and predictions {p.shape}: need two equal 1-d arrays")
    if y.size == 0:
        raise ValueError("no examples")
    return y, p


def confusion_counts(labels: ArrayLike, predictions: ArrayLike) -> np.ndarray:
    """Confusion matrix C[true, predicted] over the classes seen in labels or predictions."""
    y, p = _pair(labels, predictions)
    classes, codes = np.unique(np.concatenate([y, p]), return_inverse=True)
    k = classes.size
    cells = codes[: y.size] * k + codes[y.size :]
    return np.bincount(cells, minlength=k * k).reshape(k, k)


def _accuracy_of(counts: np.ndarray) -> np.ndarray:
    """Accuracy of each confusion matrix in a stack (..., k, k): trace / total."""
    return np.trace(counts, axis1=-2, axis2=-1) / counts.sum(axis=(-2, -1))


def _macro_f1_of(counts: np.ndarray) -> np.ndarray:
    """Macro-F1 of each confusion matrix in a stack (..., k, k).

    Per class F1 = 2 TP / (2 TP + FP + FN) = 2 TP / (row sum + column sum); the macro average
    runs over the classes that occur in the labels or the predictions (row + column sum > 0),
    which is scikit-learn's `f1_score(average="macro", zero_division=0)`.
    """
    tp = np.diagonal(counts, axis1=-2, axis2=-1).astype(float)
    denominator = counts.sum(axis=-1) + counts.sum(axis=-2)
    present = denominator > 0
    f1 = np.divide(2 * tp, denominator, out=np.zeros_like(tp), where=present)
    return f1.sum(axis=-1) / present.sum(axis=-1)


_METRIC_FUNCTIONS = {"accuracy": _accuracy_of, "macro_f1": _macro_f1_of}


def accuracy(labels: ArrayLike, predictions: ArrayLike) -> float:
    """Fraction of examples whose prediction equals the label."""
    return float(_accuracy_of(confusion_counts(labels, predictions)))


def macro_f1(labels: ArrayLike, predictions: ArrayLike) -> float:
    """Unweighted mean of per-class F1 over the classes seen (scikit-learn's macro-F1)."""
    return float(_macro_f1_of(confusion_counts(labels, predictions)))


def _resampled_counts(counts: np.ndarray, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Confusion matrices of `resamples` bootstrap samples: Multinomial(n, counts / n) draws."""
    n = int(counts.sum())
    flat = counts.ravel()
    draws = rng.multinomial(n, flat / n, size=resamples)
    return draws.reshape(resamples, *counts.shape)


def _percentile(values: np.ndarray, level: float) -> tuple[float, float]:
    """The (1 - level) / 2 and (1 + level) / 2 quantiles (linear interpolation)."""
    low, high = np.quantile(values, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)


def bootstrap_intervals(
    labels: ArrayLike,
    predictions: ArrayLike,
    metrics: Sequence[str] = METRICS,
    resamples: int = DEFAULT_RESAMPLES,
    level: float = DEFAULT_LEVEL,
    seed: Seed = 0,
) -> dict[str, Interval]:
    """Percentile bootstrap intervals of several metrics of one run, from the same resamples.

    Draw `resamples` samples of the n test examples with replacement, compute each metric
    on every sample, and take the (1 - level) / 2 and (1 + level) / 2 quantiles of those
    values as the interval; the estimate is the metric on the original sample. Metrics:
    "accuracy" and "macro_f1".
    """
    _check_level(level)
    _check_resamples(resamples)
    unknown = [m for m in metrics if m not in _METRIC_FUNCTIONS]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}: choose from {sorted(_METRIC_FUNCTIONS)}")
    counts = confusion_counts(labels, predictions)
    samples = _resampled_counts(counts, resamples, _rng(seed))
    intervals = {}
    for metric in metrics:
        function = _METRIC_FUNCTIONS[metric]
        low, high = _percentile(function(samples), level)
        intervals[metric] = Interval(float(function(counts)), low, high, level)
    return intervals


def bootstrap_interval(
    labels: ArrayLike,
    predictions: ArrayLike,
    metric: str = "accuracy",
    resamples: int = DEFAULT_RESAMPLES,
    level: float = DEFAULT_LEVEL,
    seed: Seed = 0,
) -> Interval:
    """Percentile bootstrap interval of one metric of one run (see `bootstrap_intervals`)."""
    return bootstrap_intervals(labels, predictions, (metric,), resamples, level, seed)[metric]


def seed_interval(values: Sequence[float], level: float = DEFAULT_LEVEL) -> Interval | None:
    """Mean ± t interval over per-seed values; None with fewer than two values.

    mean ± t_{(1 + level) / 2, n - 1} · s / √n, where s is the sample standard deviation
    (ddof = 1) of the n per-seed values: the interval of the expected value over seeds,
    treating the seeds as independent draws.
    """
    _check_level(level)
    data = np.asarray(values, dtype=float)
    if data.ndim != 1 or not np.all(np.isfinite(data)):
        raise ValueError("seed values must be a 1-d sequence of finite numbers")
    n = data.size
    if n < 2:
        return None
    mean = float(data.mean())
    half = float(scipy_stats.t.ppf((1 + level) / 2, n - 1) * data.std(ddof=1) / math.sqrt(n))
    return Interval(mean, mean - half, mean + half, level)


def discordant_counts(
    labels: ArrayLike, predictions_a: ArrayLike, predictions_b: ArrayLike
) -> tuple[int, int]:
    """(b, c): examples only A got right, and examples only B got right."""
    y, a = _pair(labels, predictions_a)
    _, b = _pair(labels, predictions_b)
    right_a, right_b = a == y, b == y
    return int(np.sum(right_a & ~right_b)), int(np.sum(~right_a & right_b))


def mcnemar_p(b: int, c: int) -> float:
    """Exact two-sided McNemar p from the discordant counts b and c.

    Under the null hypothesis both methods are equally accurate, so each of the b + c
    discordant examples is equally likely to favour either: b ~ Binomial(b + c, 1/2).
    p = min(1, 2 · P(X ≤ min(b, c))) with X ~ Binomial(b + c, 1/2); p = 1 when b + c = 0.
    """
    if b < 0 or c < 0:
        raise ValueError(f"discordant counts must be non-negative, got b={b}, c={c}")
    if b + c == 0:
        return 1.0
    return float(min(1.0, 2.0 * scipy_stats.binom.cdf(min(b, c), b + c, 0.5)))


def mcnemar_exact(labels: ArrayLike, predictions_a: ArrayLike, predictions_b: ArrayLike) -> McNemar:
    """McNemar's exact test of two methods' predictions on the same examples (see mcnemar_p)."""
    b, c = discordant_counts(labels, predictions_a, predictions_b)
    return McNemar(b, c, mcnemar_p(b, c))


def paired_bootstrap(
    labels: ArrayLike,
    predictions_a: ArrayLike,
    predictions_b: ArrayLike,
    resamples: int = DEFAULT_RESAMPLES,
    level: float = DEFAULT_LEVEL,
    seed: Seed = 0,
) -> PairedBootstrap:
    """Paired bootstrap of accuracy(A) - accuracy(B) on the same test examples.

    Resample the n examples with replacement, the same examples for both methods, and
    compute d* = accuracy*(A) - accuracy*(B) on each of B resamples. Interval: the
    (1 - level) / 2 and (1 + level) / 2 quantiles of d* (percentile method). Two-sided p:
    min(1, 2 · min(#{d* ≤ 0} + 1, #{d* ≥ 0} + 1) / (B + 1)), the share of resamples on the
    other side of zero, doubled (the +1 keeps p from being 0 with finitely many resamples).
    Identical predictions give d* = 0 throughout, so a zero interval and p = 1.
    """
    _check_level(level)
    _check_resamples(resamples)
    y, a = _pair(labels, predictions_a)
    _, b_pred = _pair(labels, predictions_b)
    b, c = discordant_counts(y, a, b_pred)
    n = y.size
    # Only the discordant examples move the difference: (only A right, only B right, others).
    draws = _rng(seed).multinomial(n, np.array([b, c, n - b - c]) / n, size=resamples)
    diffs = (draws[:, 0] - draws[:, 1]) / n
    low, high = _percentile(diffs, level)
    below, above = int(np.sum(diffs <= 0)), int(np.sum(diffs >= 0))
    p = min(1.0, 2.0 * (min(below, above) + 1) / (resamples + 1))
    return PairedBootstrap((b - c) / n, low, high, level, p, resamples)


def holm(p_values: Sequence[float], alpha: float = DEFAULT_ALPHA) -> tuple[list[float], list[bool]]:
    """Holm–Bonferroni step-down adjusted p-values and rejections at family-wise level alpha.

    Sort the m p-values ascending, p_(1) ≤ … ≤ p_(m); the adjusted value of p_(i) is
    max over j ≤ i of min(1, (m - j + 1) · p_(j)). A hypothesis is rejected when its
    adjusted p ≤ alpha. Results are in the input order.
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    p = np.asarray(p_values, dtype=float)
    if p.ndim != 1 or np.any(~np.isfinite(p)) or np.any((p < 0) | (p > 1)):
        raise ValueError("p-values must be a 1-d sequence of numbers in [0, 1]")
    m = p.size
    order = np.argsort(p, kind="stable")
    scaled = np.minimum(1.0, (m - np.arange(m)) * p[order])
    adjusted = np.empty(m)
    adjusted[order] = np.maximum.accumulate(scaled)
    return [float(x) for x in adjusted], [bool(x <= alpha) for x in adjusted]
