"""How each method stands against the most accurate one: the one tie rule of the report.

The paired tests of `report.significance` decide where both methods' predictions were
compared (significant = Holm-adjusted McNemar p ≤ α, on every seed both ran); otherwise the
binomial-noise rule (a gap smaller than the larger of the binomial half-width and the seed std
is not distinguishable). Each verdict is a `Recommendation` the recommendations and the bottom
line build on. Pure functions over plain figures, no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from peftbench.report.power import examples_needed, power_wording
from peftbench.report.ranking import ACCURACY, accuracy_noise, percent, pp, rank
from peftbench.report.runs import MethodStats
from peftbench.report.significance import PairComparison, find_comparison, p_is
from peftbench.stats import DEFAULT_ALPHA

INCONSISTENT = "Inconsistent across seeds"  # headline: the paired tests favour the other method
NOT_DISTINGUISHABLE = "Not distinguishable"


@dataclass(frozen=True)
class Recommendation:
    """One finding, the method(s) it is about and the figures it rests on."""

    kind: str  # best | cheapest | pareto | noise | significant | failure | note
    headline: str
    text: str
    subjects: tuple[str, ...] = ()
    figures: dict[str, Any] = field(default_factory=dict)


def most_accurate(stats: Sequence[MethodStats]) -> MethodStats | None:
    """The method with the highest mean accuracy (first one on a tie), or None."""
    by_name = {s.name: s for s in stats}
    ranked = rank({s.name: s.mean for s in stats}, ACCURACY)
    return by_name[ranked[0]] if ranked else None


def noise_warnings(
    stats: Sequence[MethodStats],
    comparisons: Sequence[PairComparison] = (),
    alpha: float = DEFAULT_ALPHA,
) -> list[Recommendation]:
    """For each method against the most accurate one: not distinguishable ("noise") or
    significantly behind. Paired tests decide where a comparison exists; otherwise the
    binomial-noise rule, which only reports ties."""
    best = most_accurate(stats)
    if best is None:
        return []
    findings = []
    family = sum(len(pair.seeds) for pair in comparisons)
    for other in stats:
        if other is best or other.mean.get(ACCURACY) is None:
            continue
        pair = find_comparison(comparisons, best.name, other.name)
        if pair is not None:
            findings.append(_paired_finding(best, other, pair, alpha, family))
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
        f"noise of ±{pp(noise)} ({_noise_source(best, other)}): not distinguishable."
    )
    figures = {"gap": gap, "noise": noise}
    return Recommendation("noise", "Within noise", text, (best.name, other.name), figures)


def _paired_figures(
    best: MethodStats, pair: PairComparison, alpha: float, family: int
) -> tuple[dict[str, Any], str, str]:
    """Figures of best against the other method, the difference in words and the tests."""
    sign = 1.0 if pair.a == best.name else -1.0
    diff = sign * pair.mean_difference
    n = len(pair.seeds)
    discordant = sum((s.mcnemar.b + s.mcnemar.c) / s.n for s in pair.seeds) / n
    figures: dict[str, Any] = {
        "difference": diff,
        "p_value": pair.p_value,
        "alpha": alpha,
        "seeds": n,
        "significant_seeds": pair.significant_seeds,
        "comparisons": family,
        "examples_needed": examples_needed(diff, discordant, alpha, family, seeds=n),
    }
    if n > 1:
        measured = f"{_signed_pp(diff)} on average over {n} seeds"
        tests = (
            f"significant in {pair.significant_seeds} of {n} seeds; largest Holm-adjusted "
            f"McNemar {p_is(pair.p_value)}"
        )
        return figures, measured, tests
    seed = pair.seeds[0]
    low, high = sorted((sign * seed.bootstrap.low, sign * seed.bootstrap.high))
    figures["ci"] = (low, high)
    figures["uncorrected_p"] = seed.mcnemar.p_value
    measured = (
        f"{_signed_pp(diff)} (paired bootstrap {100 * seed.bootstrap.level:g} % CI "
        f"{_signed_pp(low)} to {_signed_pp(high)}; seed {seed.seed}, n = {seed.n:,})"
    )
    tests = f"McNemar exact {p_is(seed.mcnemar.p_value)}, Holm-adjusted {p_is(seed.holm_p)}"
    return figures, measured, tests


def _why_not(figures: dict[str, Any], alpha: float) -> str:
    """For a difference that is not significant: why an interval may exclude zero, and how
    many test examples would tell it apart."""
    text = ""
    low, high = figures.get("ci") or (0.0, 0.0)
    family = figures["comparisons"]
    uncorrected = figures.get("uncorrected_p")
    if uncorrected is not None and uncorrected <= alpha and family > 1:
        text += (
            f" Its McNemar test would count for this pair alone ({p_is(uncorrected)}), but "
            f"must hold across all {family} comparisons of the experiment (Holm), and does not."
        )
    elif low > 0 or high < 0:
        text += (
            " Its paired bootstrap interval excludes zero, but McNemar's exact test, the one "
            "judged, does not: with few examples got right by one method only, the bootstrap "
            "interval is too narrow."
        )
    needed = figures.get("examples_needed")
    if needed:
        text += (
            f" Telling a gap this size apart would take about {needed:,} test examples per "
            f"seed (McNemar power approximation, {power_wording(figures['seeds'])}, "
            f"α = {alpha:g} over {family} comparisons)."
        )
    return text


def _paired_finding(
    best: MethodStats, other: MethodStats, pair: PairComparison, alpha: float, family: int
) -> Recommendation:
    """The paired tests' verdict on best against other, citing the difference and p-values."""
    figures, measured, tests = _paired_figures(best, pair, alpha, family)
    diff = figures["difference"]
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
            f"α = {alpha:g} after Holm correction ({tests})."
        )
        return Recommendation("significant", "Significant difference", text, subjects, figures)
    text = (
        f"{best.name} ({percent(best.mean[ACCURACY])}) and {other.name} "
        f"({percent(other.mean[ACCURACY])}): difference {measured}, not distinguishable at "
        f"α = {alpha:g} ({tests})." + _why_not(figures, alpha)
    )
    return Recommendation("noise", NOT_DISTINGUISHABLE, text, subjects, figures)


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
