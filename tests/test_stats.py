"""peftbench.stats against hand-worked values, scikit-learn, statsmodels and simulation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score

from peftbench.stats import (
    Interval,
    accuracy,
    bootstrap_interval,
    bootstrap_intervals,
    confusion_counts,
    discordant_counts,
    holm,
    macro_f1,
    mcnemar_exact,
    mcnemar_p,
    paired_bootstrap,
    seed_interval,
)


def noisy(labels: np.ndarray, accuracy_: float, classes: int, rng: np.random.Generator):
    """Predictions that equal the labels with probability accuracy_, else a random other class."""
    wrong = (labels + rng.integers(1, classes, labels.size)) % classes
    return np.where(rng.random(labels.size) < accuracy_, labels, wrong)


def with_errors(n: int, wrong: set[int]) -> tuple[list[int], list[int]]:
    """Balanced binary labels and predictions that are wrong exactly at the given indices."""
    labels = [i % 2 for i in range(n)]
    return labels, [1 - y if i in wrong else y for i, y in enumerate(labels)]


# ----- point metrics -----


@pytest.mark.parametrize("classes", [2, 3, 5])
def test_accuracy_and_macro_f1_match_scikit_learn(classes: int) -> None:
    rng = np.random.default_rng(classes)
    labels = rng.integers(0, classes, 400)
    predictions = noisy(labels, 0.7, classes, rng)
    predictions[:3] = classes  # a class that only occurs among the predictions
    assert accuracy(labels, predictions) == pytest.approx(accuracy_score(labels, predictions))
    expected = f1_score(labels, predictions, average="macro", zero_division=0)
    assert macro_f1(labels, predictions) == pytest.approx(expected)


def test_confusion_counts_by_hand() -> None:
    # true 0 predicted 0 twice, true 0 predicted 1 once, true 1 predicted 1 once
    assert confusion_counts([0, 0, 0, 1], [0, 1, 0, 1]).tolist() == [[2, 1], [0, 1]]
    # per class F1: class 0: 2*2 / (2*2 + 0 + 1) = 0.8; class 1: 2*1 / (2*1 + 1 + 0) = 2/3
    assert macro_f1([0, 0, 0, 1], [0, 1, 0, 1]) == pytest.approx((0.8 + 2 / 3) / 2)


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="equal 1-d"):
        accuracy([0, 1], [0])
    with pytest.raises(ValueError, match="no examples"):
        accuracy([], [])
    with pytest.raises(ValueError, match="level"):
        bootstrap_interval([0, 1], [0, 1], level=1.0)
    with pytest.raises(ValueError, match="resamples"):
        paired_bootstrap([0, 1], [0, 1], [1, 1], resamples=0)
    with pytest.raises(ValueError, match="unknown metric"):
        bootstrap_interval([0, 1], [0, 1], metric="auc")


# ----- bootstrap interval of one run -----


@pytest.mark.parametrize(("level", "low", "high"), [(0.95, 0.90, 0.99), (0.5, 0.38, 0.62)])
def test_bootstrap_interval_covers_the_true_accuracy_at_its_level(
    level: float, low: float, high: float
) -> None:
    # 200 simulated test sets of 500 examples from a classifier that is right with p = 0.85.
    # The share of intervals that contain 0.85 estimates the coverage; its standard error is
    # about sqrt(0.95 * 0.05 / 200) = 0.015 at level 0.95 and 0.035 at level 0.5.
    rng = np.random.default_rng(2024)
    true, covered = 0.85, 0
    for i in range(200):
        labels = rng.integers(0, 2, 500)
        predictions = noisy(labels, true, 2, rng)
        interval = bootstrap_interval(labels, predictions, resamples=300, level=level, seed=i)
        covered += interval.contains(true)
    assert low <= covered / 200 <= high


def test_bootstrap_matches_resampling_example_indices() -> None:
    # The multinomial shortcut must give the distribution of metrics over resampled indices.
    rng = np.random.default_rng(7)
    labels = rng.integers(0, 3, 300)
    predictions = noisy(labels, 0.75, 3, rng)
    intervals = bootstrap_intervals(labels, predictions, resamples=4000, level=0.9, seed=1)
    indices = rng.integers(0, 300, size=(4000, 300))
    accs = (labels[indices] == predictions[indices]).mean(axis=1)
    # scikit-learn is slow per call: fewer resamples, so a looser tolerance (about 4 sd)
    f1s = [
        f1_score(labels[i], predictions[i], average="macro", zero_division=0) for i in indices[:300]
    ]
    for metric, values, tolerance in (("accuracy", accs, 0.006), ("macro_f1", f1s, 0.015)):
        expected_low, expected_high = np.quantile(values, [0.05, 0.95])
        assert intervals[metric].low == pytest.approx(expected_low, abs=tolerance)
        assert intervals[metric].high == pytest.approx(expected_high, abs=tolerance)
    # and both are about the normal-approximation width, 1.645 * sqrt(p (1 - p) / n)
    p = accuracy(labels, predictions)
    half = 1.645 * math.sqrt(p * (1 - p) / 300)
    assert intervals["accuracy"].half_width == pytest.approx(half, rel=0.1)


def test_bootstrap_is_seeded() -> None:
    labels, predictions = with_errors(200, set(range(30)))
    first = bootstrap_intervals(labels, predictions, seed=3)
    assert bootstrap_intervals(labels, predictions, seed=3) == first
    assert bootstrap_intervals(labels, predictions, seed=4) != first
    generator = bootstrap_interval(labels, predictions, seed=np.random.default_rng(3))
    assert generator == first["accuracy"]
    assert first["accuracy"].estimate == pytest.approx(0.85)
    assert first["accuracy"].low < 0.85 < first["accuracy"].high


# ----- across seeds -----


def test_seed_interval_by_hand() -> None:
    # mean 0.885, s = 0.005, t(0.975, 2 dof) = 4.302653: half-width 4.302653 * 0.005 / sqrt(3)
    interval = seed_interval([0.88, 0.89, 0.885])
    assert interval is not None
    assert interval.estimate == pytest.approx(0.885)
    assert interval.half_width == pytest.approx(0.0124207, abs=1e-6)
    assert seed_interval([0.88]) is None and seed_interval([]) is None
    assert seed_interval([0.9, 0.9]) == Interval(0.9, 0.9, 0.9, 0.95)


def test_seed_interval_uses_t_not_normal_quantiles() -> None:
    # With three seeds a normal quantile (1.96) would cover about 87 %; t(2 dof) covers 95 %.
    rng = np.random.default_rng(11)
    covered = 0
    for _ in range(2000):
        interval = seed_interval(rng.normal(0.85, 0.01, 3).tolist())
        assert interval is not None
        covered += interval.contains(0.85)
    assert 0.93 <= covered / 2000 <= 0.97


# ----- McNemar -----


def test_mcnemar_by_hand() -> None:
    # b = 10, c = 2: 2 * P(X <= 2 | n = 12, 1/2) = 2 * (1 + 12 + 66) / 4096 = 0.038574
    assert mcnemar_p(10, 2) == pytest.approx(0.038574, abs=1e-6)
    assert mcnemar_p(2, 10) == mcnemar_p(10, 2)
    assert mcnemar_p(0, 0) == 1.0 and mcnemar_p(5, 5) == 1.0
    # b = 0, c = 7: 2 * (1/2) ** 7 = 0.015625
    assert mcnemar_p(0, 7) == pytest.approx(0.015625)
    with pytest.raises(ValueError):
        mcnemar_p(-1, 3)


def test_mcnemar_from_predictions() -> None:
    # A wrong on 0-19, B wrong on 10-41: only A right on 20-41 (b = 22), only B right 0-9 (c = 10)
    labels, a = with_errors(100, set(range(20)))
    _, b = with_errors(100, set(range(10, 42)))
    assert discordant_counts(labels, a, b) == (22, 10)
    result = mcnemar_exact(labels, a, b)
    assert (result.b, result.c) == (22, 10)
    assert result.p_value == pytest.approx(mcnemar_p(22, 10))
    assert mcnemar_exact(labels, a, a).p_value == 1.0


def test_mcnemar_matches_statsmodels() -> None:
    contingency = pytest.importorskip("statsmodels.stats.contingency_tables")
    for b, c in [(10, 2), (0, 7), (30, 17), (5, 5), (120, 95), (1, 0)]:
        expected = contingency.mcnemar([[50, b], [c, 40]], exact=True).pvalue
        assert mcnemar_p(b, c) == pytest.approx(expected, rel=1e-9)


# ----- paired bootstrap -----


def test_paired_bootstrap_of_identical_predictions() -> None:
    labels, predictions = with_errors(500, set(range(60)))
    result = paired_bootstrap(labels, predictions, list(predictions))
    assert result.difference == 0.0 and (result.low, result.high) == (0.0, 0.0)
    assert result.p_value == 1.0


def test_paired_bootstrap_of_a_clear_and_a_tiny_difference() -> None:
    # n = 2000. A wrong on 0-219 (89.0 %); B wrong on 0-299 (85.0 %): b = 80, c = 0.
    labels, a = with_errors(2000, set(range(220)))
    _, b = with_errors(2000, set(range(300)))
    clear = paired_bootstrap(labels, a, b, resamples=999, seed=0)
    assert clear.difference == pytest.approx(0.04)
    assert clear.low > 0 and clear.p_value == pytest.approx(2 / 1000)
    # sd of the difference: sqrt(b / n^2 - d^2 / n) = sqrt(80 / 2000^2 - 0.04^2 / 2000)
    sd = math.sqrt(80 / 2000**2 - 0.04**2 / 2000)
    assert clear.high - clear.low == pytest.approx(2 * 1.96 * sd, rel=0.1)
    # C wrong on 0-209 and 1980-1999 (88.5 %): b = 20, c = 10 against A, a 0.5 pp gap.
    _, c = with_errors(2000, set(range(210)) | set(range(1980, 2000)))
    tiny = paired_bootstrap(labels, a, c, seed=0)
    assert tiny.difference == pytest.approx(0.005)
    assert tiny.low < 0 < tiny.high and 0.05 < tiny.p_value < 0.2
    reverse = paired_bootstrap(labels, c, a, seed=0)
    assert reverse.difference == pytest.approx(-0.005) and reverse.high > 0


def test_paired_bootstrap_matches_resampling_example_indices() -> None:
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 2, 400)
    a, b = noisy(labels, 0.85, 2, rng), noisy(labels, 0.8, 2, rng)
    result = paired_bootstrap(labels, a, b, resamples=4000, level=0.9, seed=2)
    indices = rng.integers(0, 400, size=(4000, 400))
    diffs = (a[indices] == labels[indices]).mean(1) - (b[indices] == labels[indices]).mean(1)
    expected_low, expected_high = np.quantile(diffs, [0.05, 0.95])
    assert result.low == pytest.approx(expected_low, abs=0.006)
    assert result.high == pytest.approx(expected_high, abs=0.006)


# ----- Holm -----


def test_holm_by_hand() -> None:
    # sorted: 0.005 * 4 = 0.02, 0.01 * 3 = 0.03, 0.03 * 2 = 0.06, 0.04 * 1 = 0.04 -> max 0.06
    adjusted, reject = holm([0.01, 0.04, 0.03, 0.005], alpha=0.05)
    assert adjusted == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert reject == [True, False, False, True]
    # capped at 1 and monotone: 0.4 * 2 = 0.8, then max(0.8, 0.9) = 0.9
    assert holm([0.9, 0.4]) == (pytest.approx([0.9, 0.8]), [False, False])
    assert holm([0.6, 0.7]) == ([1.0, 1.0], [False, False])
    assert holm([]) == ([], [])
    with pytest.raises(ValueError):
        holm([0.5, 1.5])


def test_holm_matches_statsmodels() -> None:
    multitest = pytest.importorskip("statsmodels.stats.multitest")
    rng = np.random.default_rng(3)
    p_values = np.concatenate([rng.uniform(0, 0.02, 5), rng.uniform(0, 1, 10)])
    expected_reject, expected, _, _ = multitest.multipletests(p_values, 0.05, method="holm")
    adjusted, reject = holm(p_values.tolist(), alpha=0.05)
    assert adjusted == pytest.approx(expected.tolist())
    assert reject == expected_reject.tolist()
