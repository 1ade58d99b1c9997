"""Recommendations from the numbers: pure functions over plain figures, no I/O.

Whether one method is more accurate than another is decided by the paired tests of
`report.significance` where both methods' predictions were compared, and otherwise by the
binomial-noise rule (a gap smaller than the larger of the binomial half-width and the seed std
counts as a tie). A method is never called better when its lead is not significant.

Every figure is keyed by a `report.columns.COLUMNS` key and read in the direction that column
declares (`higher_is_better`), so the Pareto front and rankings never restate which way is better.
Accuracies are fractions in [0, 1]; a margin of 0.01 is one percentage point (pp).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from peftbench.report.columns import COLUMNS_BY_KEY
from peftbench.report.runs import MethodStats
from peftbench.report.significance import PairComparison, find_comparison, p_is
from peftbench.stats import DEFAULT_ALPHA

ACCURACY = "accuracy"
DEFAULT_MARGIN = 0.01  # one percentage point
Z_95 = 1.96  # two-sided 95 % normal quantile
_EPS = 1e-9  # float slack when comparing accuracies against a margin
INCONSISTENT = "Inconsistent across seeds"  # headline: the paired tests favour the other method
UNITS = {
    "trainable_params": "",
    "train_time_s": " s",
    "eval_time_s": " s",
    "model_size_mb": " MB",
    "peak_rss_mb": " MB",
    "cuda_peak_allocated_mb": " MB",
    "cuda_peak_reserved_mb": " MB",
    "nvml_peak_used_mb": " MB",
    "train_tokens_per_s": " tokens/s",
}


@dataclass(frozen=True)
class Recommendation:
    """One finding, the method(s) it is about and the figures it rests on."""

    kind: str  # best | cheapest | pareto | noise | failure | note
    headline: str
    text: str
    subjects: tuple[str, ...] = ()
    figures: dict[str, Any] = field(default_factory=dict)


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


def dominates(a: Mapping[str, float], b: Mapping[str, float], keys: Sequence[str]) -> bool:
    """Whether `a` is at least as good as `b` in every key and strictly better in one."""
    pairs = [(_oriented(a[k], k), _oriented(b[k], k)) for k in keys]
    return all(x >= y for x, y in pairs) and any(x > y for x, y in pairs)


def pareto_front(
    points: Mapping[str, Mapping[str, float | None]], keys: Sequence[str]
) -> list[str]:
    """Names no other point dominates over `keys`, in input order; incomplete points left out."""
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
        if not any(dominates(other, figures, keys) for o, other in complete.items() if o != name)
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
    """A figure with its unit, e.g. '4,120 MB' or '420.0 s'."""
    if key in (ACCURACY, "macro_f1"):
        return percent(value)
    if key == "model_size_mb":
        return f"{value:,.2f} MB"
    if key in ("train_time_s", "eval_time_s"):
        return f"{value:,.1f} s"
    return f"{value:,.0f}{UNITS.get(key, '')}"


def cost_label(key: str) -> str:
    """The column label without its unit suffix, e.g. 'peak CUDA allocated'."""
    return COLUMNS_BY_KEY[key].label.split(" (")[0]


def _accuracy_detail(stats: MethodStats) -> str:
    """How sure an accuracy is: seed std, and the computed or the binomial interval, in words."""
    parts = []
    if ACCURACY in stats.std:
        parts.append(f"std {pp(stats.std[ACCURACY])} over {stats.n_seeds} seeds")
    elif stats.n_seeds == 1:
        parts.append("one seed")
    if stats.accuracy_interval is not None:
        low, high = stats.accuracy_interval
        interval = f"{stats.interval_kind or 'interval'} {percent(low)} to {percent(high)}"
        size = f", n = {stats.test_size:,} test examples" if stats.test_size else ""
        parts.append(interval + size)
    elif stats.test_size and ACCURACY in stats.mean:
        half = binomial_half_width(stats.mean[ACCURACY], stats.test_size)
        parts.append(f"95 % binomial interval ±{pp(half)}, n = {stats.test_size:,} test examples")
    return "; ".join(parts)


def most_accurate(stats: Sequence[MethodStats]) -> MethodStats | None:
    """The method with the highest mean accuracy (first one on a tie), or None."""
    by_name = {s.name: s for s in stats}
    ranked = rank({s.name: s.mean for s in stats}, ACCURACY)
    return by_name[ranked[0]] if ranked else None


def within_margin(stats: Sequence[MethodStats], margin: float) -> list[MethodStats]:
    """Methods whose mean accuracy is at most `margin` below the best one's."""
    best = most_accurate(stats)
    if best is None:
        return []
    floor = best.mean[ACCURACY] - margin - _EPS
    return [s for s in stats if s.mean.get(ACCURACY) is not None and s.mean[ACCURACY] >= floor]


def cheapest_within(
    stats: Sequence[MethodStats], cost_key: str, margin: float = DEFAULT_MARGIN
) -> MethodStats | None:
    """The best method by `cost_key` among those within `margin` of the best accuracy."""
    candidates = within_margin(stats, margin)
    by_name = {s.name: s for s in candidates}
    ranked = rank({s.name: s.mean for s in candidates}, cost_key)
    return by_name[ranked[0]] if ranked else None


def _best_rec(best: MethodStats, ties: Sequence[Recommendation]) -> Recommendation:
    """The highest accuracy; 'Most accurate' only when no other method is tied with it."""
    accuracy = best.mean[ACCURACY]
    detail = _accuracy_detail(best)
    text = f"{best.name}, accuracy {percent(accuracy)}" + (f" ({detail})" if detail else "")
    figures: dict[str, Any] = {
        ACCURACY: accuracy,
        "n_seeds": best.n_seeds,
        "test_size": best.test_size,
    }
    if not ties:
        return Recommendation("best", "Most accurate", text + ".", (best.name,), figures)
    reasons = [_tie_reason(t) for t in ties]
    text += f", but not significantly more accurate than {_join(reasons)}: treat these as tied."
    figures["tied_with"] = [t.subjects[1] for t in ties]
    return Recommendation("best", "Highest accuracy, no clear lead", text, (best.name,), figures)


def _tie_reason(tie: Recommendation) -> str:
    """'LoRA (Holm-adjusted McNemar p = 0.52)' or 'LoRA (within measurement noise)'."""
    p = tie.figures.get("p_value")
    if tie.headline == INCONSISTENT:
        why = "significantly more accurate on the seeds both ran"
    elif p is not None:
        why = f"Holm-adjusted McNemar {p_is(p)}"
    else:
        why = "within measurement noise"
    return f"{tie.subjects[1]} ({why})"


def _join(items: Sequence[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def _cheapest_rec(
    stats: Sequence[MethodStats],
    best: MethodStats,
    cost_key: str,
    margin: float,
    comparisons: Sequence[PairComparison] = (),
) -> Recommendation | None:
    pick = cheapest_within(stats, cost_key, margin)
    if pick is None:
        return None
    what = cost_label(cost_key)
    headline = f"Cheapest by {what} within {pp(margin)} of the best"
    cost = pick.mean[cost_key]
    figures: dict[str, Any] = {cost_key: cost, ACCURACY: pick.mean[ACCURACY]}
    if pick is best:
        text = (
            f"{best.name} itself ({fmt_figure(cost_key, cost)}): no method within {pp(margin)} "
            f"of its accuracy ({percent(best.mean[ACCURACY])}) needs less."
        )
        return Recommendation("cheapest", headline, text, (pick.name,), figures)
    behind = best.mean[ACCURACY] - pick.mean[ACCURACY]
    text = f"{pick.name}, {fmt_figure(cost_key, cost)}"
    best_cost = best.mean.get(cost_key)
    if best_cost is not None:
        figures[f"best_{cost_key}"] = best_cost
        text += f" against {fmt_figure(cost_key, best_cost)} for {best.name}"
        if best_cost:
            change = (cost - best_cost) / best_cost
            figures["relative_change"] = change
            text += f" ({100 * change:+.1f} %)"
    text += (
        f", at accuracy {percent(pick.mean[ACCURACY])}, {pp(behind)} below "
        f"{best.name} ({percent(best.mean[ACCURACY])})."
    )
    figures["best_accuracy"] = best.mean[ACCURACY]
    pair = find_comparison(comparisons, best.name, pick.name)
    if pair is not None:
        figures["p_value"] = pair.p_value
        verdict = "is significant" if pair.significant else "is not significant"
        text += f" The gap {verdict} (Holm-adjusted McNemar {p_is(pair.p_value)})."
    return Recommendation("cheapest", headline, text, (pick.name, best.name), figures)


def _pareto_rec(stats: Sequence[MethodStats], cost_key: str) -> Recommendation | None:
    points = {s.name: s.mean for s in stats}
    front = pareto_front(points, [ACCURACY, cost_key])
    if not front:
        return None
    dominated = [n for n in points if _complete(points[n], cost_key) and n not in front]
    parts = [
        f"{n} ({percent(points[n][ACCURACY])}, {fmt_figure(cost_key, points[n][cost_key])})"
        for n in front
    ]
    text = "; ".join(parts) + "."
    if dominated:
        text += " Dominated (another method is as good or better on both): "
        text += ", ".join(dominated) + "."
    figures = {n: {ACCURACY: points[n][ACCURACY], cost_key: points[n][cost_key]} for n in front}
    headline = f"Pareto-optimal, accuracy vs {cost_label(cost_key)}"
    return Recommendation("pareto", headline, text, tuple(front), figures)


def _complete(figures: Mapping[str, float], cost_key: str) -> bool:
    return figures.get(ACCURACY) is not None and figures.get(cost_key) is not None


def noise_warnings(
    stats: Sequence[MethodStats],
    comparisons: Sequence[PairComparison] = (),
    alpha: float = DEFAULT_ALPHA,
) -> list[Recommendation]:
    """For each method against the most accurate one: tied (not significant) or significantly
    behind. Paired tests decide where a comparison exists; otherwise the binomial-noise rule,
    which only reports ties."""
    best = most_accurate(stats)
    if best is None:
        return []
    findings = []
    for other in stats:
        if other is best or other.mean.get(ACCURACY) is None:
            continue
        pair = find_comparison(comparisons, best.name, other.name)
        if pair is not None:
            findings.append(_paired_finding(best, other, pair, alpha))
            continue
        noise = _noise_finding(best, other)
        if noise is not None:
            findings.append(noise)
    return findings


def _noise_finding(best: MethodStats, other: MethodStats) -> Recommendation | None:
    """A tie when the accuracy gap is below the larger noise level of the two, else None."""
    levels = [x for x in (accuracy_noise(best), accuracy_noise(other)) if x is not None]
    if not levels:
        return None
    noise = max(levels)
    gap = best.mean[ACCURACY] - other.mean[ACCURACY]
    if gap >= noise:
        return None
    text = (
        f"{best.name} ({percent(best.mean[ACCURACY])}) and {other.name} "
        f"({percent(other.mean[ACCURACY])}) differ by {pp(gap)}, less than the measurement "
        f"noise of ±{pp(noise)} ({_noise_source(best, other)}): treat them as tied."
    )
    figures = {"gap": gap, "noise": noise}
    return Recommendation("noise", "Within noise", text, (best.name, other.name), figures)


def _paired_finding(
    best: MethodStats, other: MethodStats, pair: PairComparison, alpha: float
) -> Recommendation:
    """The paired tests' verdict on best against other, citing the difference and p-values."""
    sign = 1.0 if pair.a == best.name else -1.0
    diff = sign * pair.mean_difference
    n = len(pair.seeds)
    figures: dict[str, Any] = {
        "difference": diff,
        "p_value": pair.p_value,
        "alpha": alpha,
        "seeds": n,
        "significant_seeds": pair.significant_seeds,
    }
    if n == 1:
        seed = pair.seeds[0]
        low, high = sorted((sign * seed.bootstrap.low, sign * seed.bootstrap.high))
        figures["ci"] = (low, high)
        measured = (
            f"{_signed_pp(diff)} (paired bootstrap {100 * seed.bootstrap.level:g} % CI "
            f"{_signed_pp(low)} to {_signed_pp(high)}; seed {seed.seed}, n = {seed.n:,})"
        )
        tests = f"McNemar exact {p_is(seed.mcnemar.p_value)}, Holm-adjusted {p_is(seed.holm_p)}"
    else:
        measured = f"{_signed_pp(diff)} on average over {n} seeds"
        tests = (
            f"significant in {pair.significant_seeds} of {n} seeds; largest Holm-adjusted "
            f"McNemar {p_is(pair.p_value)}"
        )
    subjects = (best.name, other.name)
    if pair.significant and pair.a != best.name:
        text = (
            f"{best.name} has the higher mean accuracy over all its seeds, but on the seeds both "
            f"ran {other.name} is significantly more accurate ({_signed_pp(-diff)}; {tests}): "
            "no clear winner."
        )
        return Recommendation("noise", INCONSISTENT, text, subjects, figures)
    if pair.significant:
        text = (
            f"{best.name} is more accurate than {other.name}: {measured}, significant at "
            f"α = {alpha:g} ({tests})."
        )
        return Recommendation("significant", "Significant difference", text, subjects, figures)
    text = (
        f"{best.name} ({percent(best.mean[ACCURACY])}) and {other.name} "
        f"({percent(other.mean[ACCURACY])}): difference {measured}, not significant at "
        f"α = {alpha:g} ({tests}): treat them as tied."
    )
    return Recommendation("noise", "Not significant", text, subjects, figures)


def _signed_pp(fraction: float) -> str:
    """A signed difference in percentage points, e.g. '+0.50 pp'."""
    return f"{100 * fraction:+.2f} pp"


def _noise_source(*stats: MethodStats) -> str:
    """Which noise estimates went into a noise level, in words."""
    sizes = sorted({s.test_size for s in stats if s.test_size})
    binomial = ""
    if sizes:
        binomial = (
            f"95 % binomial interval, n = {' / '.join(f'{n:,}' for n in sizes)} test examples"
        )
    stds = [f"{s.name} {pp(s.std[ACCURACY])}" for s in stats if ACCURACY in s.std]
    if not stds:
        return binomial
    seeds = f"seed-to-seed std: {', '.join(stds)}"
    return (
        f"the larger of the {binomial.replace(', n', ' (n')}) and the {seeds}"
        if binomial
        else seeds
    )


def failure_warnings(stats: Sequence[MethodStats]) -> list[Recommendation]:
    """A warning for each method with failed or canceled runs."""
    warnings = []
    for s in stats:
        if not s.failures:
            continue
        total = s.n_seeds + len(s.failures)
        head = f"{s.name}: {len(s.failures)} of {total} run(s) did not succeed"
        tail = "excluded from the means" if s.n_seeds else "no figures for this method"
        text = f"{head} ({'; '.join(s.failures)}); {tail}."
        figures = {"failed": len(s.failures), "runs": total}
        warnings.append(Recommendation("failure", "Failed runs", text, (s.name,), figures))
    return warnings


def recommend(
    stats: Sequence[MethodStats],
    margin: float = DEFAULT_MARGIN,
    memory_key: str = "cuda_peak_allocated_mb",
    comparisons: Sequence[PairComparison] = (),
    alpha: float = DEFAULT_ALPHA,
) -> list[Recommendation]:
    """All findings for the methods of one experiment: best, cheapest, Pareto, warnings.

    `comparisons` are the experiment's paired tests (method names = their labels); pairs
    without one fall back to the binomial-noise rule.
    """
    measured = [s for s in stats if not s.reference]
    recs: list[Recommendation] = []
    best = most_accurate(measured)
    if best is not None:
        findings = noise_warnings(measured, comparisons, alpha)
        recs.append(_best_rec(best, [f for f in findings if f.kind == "noise"]))
        for cost_key in (memory_key, "train_time_s", "model_size_mb"):
            rec = _cheapest_rec(measured, best, cost_key, margin, comparisons)
            if rec is not None:
                recs.append(rec)
        for cost_key in ("trainable_params", memory_key, "train_time_s"):
            rec = _pareto_rec(measured, cost_key)
            if rec is not None:
                recs.append(rec)
        recs.extend(findings)
    recs.extend(failure_warnings(measured))
    scored = [s for s in measured if ACCURACY in s.mean]
    if scored and all(s.n_seeds == 1 for s in scored):
        recs.append(
            Recommendation(
                "note",
                "One seed",
                "Every method ran with one seed: the noise estimate covers test-set sampling "
                "only, not seed-to-seed variation. Run more seeds to measure that.",
            )
        )
    return recs
