"""The report's bottom line: one paragraph per experiment answering "which method should I use?"

It is read off the recommendations (`recommend.recommend`), so it says nothing they do not:
the best method and the methods not distinguishable from it (the one tie rule), the cheaper
choice per constraint taken from that same group, how many of the paired differences are
real (significant after Holm correction) and how many test examples would be needed to tell
the closest call apart (`power`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from peftbench.report.cost_noise import tied_on
from peftbench.report.findings import INCONSISTENT
from peftbench.report.power import power_wording
from peftbench.report.ranking import (
    ACCURACY,
    cost_label,
    fmt_figure,
    join_words,
    percent,
    pp,
    rank,
)
from peftbench.report.recommend import Recommendation, cheapest_within, tie_reason
from peftbench.report.runs import MethodStats
from peftbench.report.significance import PairComparison, find_comparison, p_is


@dataclass
class BottomLine:
    """The answer for one experiment, as figures and as the paragraph that states them."""

    group: str
    best: str | None = None
    tied: list[str] = field(default_factory=list)  # not distinguishable from the best
    behind: list[str] = field(default_factory=list)  # significantly less accurate than the best
    picks: dict[str, str] = field(default_factory=dict)  # cost key -> choice in the best group
    real: int = 0  # pairwise differences significant after correction
    compared: int = 0  # pairs compared
    text: str = ""


def _lead(
    best: MethodStats,
    measured: Sequence[MethodStats],
    recs: Sequence[Recommendation],
    line: BottomLine,
) -> str:
    """The best choice: a clear winner, or the best with the methods it is tied with."""
    findings = [
        r for r in recs if r.kind in ("noise", "significant") and r.subjects[0] == best.name
    ]
    line.tied = [r.subjects[1] for r in findings if r.kind == "noise"]
    line.behind = [r.subjects[1] for r in findings if r.kind == "significant"]
    accuracy = percent(best.mean[ACCURACY])
    if not line.tied:
        p_values = [r.figures["p_value"] for r in findings if r.kind == "significant"]
        unpaired = len(measured) - 1 - len(line.behind)
        largest = p_is(max(p_values)) if p_values else ""
        bound = largest if largest.startswith("p <") else largest.replace("p =", "p ≤")
        why = [f"paired tests, Holm-adjusted {bound}"] if p_values else []
        why += [f"{unpaired} without a paired test by more than the noise"] if unpaired else []
        return (
            f"Use {best.name} ({accuracy}): it is more accurate than every other method "
            f"({'; '.join(why)})."
        )
    reasons = [tie_reason(r) for r in findings if r.kind == "noise"]
    return (
        f"{best.name} has the highest accuracy ({accuracy}), but no clear lead over "
        f"{join_words(reasons)}: on accuracy any of these is as good a choice, so pick among "
        "them by cost."
    )


def _constraints(
    stats: Sequence[MethodStats],
    group: Sequence[MethodStats],
    best: MethodStats,
    cost_keys: Sequence[str],
    comparisons: Sequence[PairComparison],
    line: BottomLine,
) -> str:
    """The cheaper choice per cost inside the best group; where the best itself is cheapest
    there, which cheaper method would cost accuracy, and how much."""
    picks, costlier = [], {}
    for key in cost_keys:
        pick = cheapest_within(group, key, best)
        if pick is None:
            continue
        line.picks[key] = pick.name
        if pick is not best:
            change = _change(pick.mean[key], best.mean.get(key))
            picks.append(
                f"by {cost_label(key)}: {pick.name} ({fmt_figure(key, pick.mean[key])}{change}, "
                f"{percent(pick.mean[ACCURACY])})"
            )
            continue
        ranked = rank({s.name: s.mean for s in stats}, key)
        cheapest = next((s for s in stats if ranked and s.name == ranked[0]), None)
        if cheapest is not None and cheapest is not best and not tied_on(cheapest, best, key):
            costlier.setdefault(cheapest.name, []).append(key)
    text = f"If a constraint matters, {'; '.join(picks)}." if picks else ""
    for name, keys in costlier.items():
        cheap = next(s for s in stats if s.name == name)
        gap = best.mean[ACCURACY] - cheap.mean[ACCURACY]
        pair = find_comparison(comparisons, best.name, name)
        verdict = f" ({p_is(pair.p_value)})" if pair is not None else ""
        what = join_words([cost_label(k) for k in keys])
        figures = ", ".join(fmt_figure(k, cheap.mean[k]) for k in keys)
        text += (
            f" No method that matches {best.name} on accuracy needs less {what}; {name}, "
            f"the cheapest ({figures}), is {pp(gap)} less accurate{verdict}."
        )
    return text.strip()


def _change(cost: float, reference: float | None) -> str:
    return f", {100 * (cost - reference) / reference:+.0f} %" if reference else ""


def _evidence(
    comparisons: Sequence[PairComparison], stats: Sequence[MethodStats], line: BottomLine
) -> str:
    """How many differences are real, with how many examples and seeds."""
    line.compared = len([pair for pair in comparisons if pair.seeds])
    line.real = int(sum(pair.significant for pair in comparisons))
    sizes = sorted({s.test_size for s in stats if s.test_size})
    seeds = sorted({s.n_seeds for s in stats if s.n_seeds})
    examples = " to ".join(f"{n:,}" for n in sizes[:: max(len(sizes) - 1, 1)]) or "the"
    with_seeds = " to ".join(map(str, seeds[:: max(len(seeds) - 1, 1)])) or "no"
    if not line.compared:
        return (
            f"No paired test (no saved predictions): differences are judged against the "
            f"measurement noise of {examples} test examples and {with_seeds} seed(s) per method."
        )
    setting = f"{examples} test examples and {with_seeds} seed(s) per method"
    if line.real == line.compared:
        return (
            f"All {line.compared} pairwise differences are real (significant after Holm "
            f"correction) with {setting}."
        )
    rest = line.compared - line.real
    return (
        f"Of the {line.compared} pairwise differences, {line.real} "
        f"{'is' if line.real == 1 else 'are'} real (significant after Holm correction); the "
        f"other {rest} {'is' if rest == 1 else 'are'} not distinguishable with {setting}."
    )


def _needed(best: MethodStats, recs: Sequence[Recommendation]) -> str:
    """How many test examples would tell apart the largest gap still not distinguishable."""
    open_calls = [
        r
        for r in recs
        if r.kind == "noise"
        and r.headline != INCONSISTENT  # already told apart, in the other method's favour
        and r.subjects[0] == best.name
        and r.figures.get("examples_needed")
    ]
    if not open_calls:
        return ""
    widest = max(open_calls, key=lambda r: abs(r.figures["difference"]))
    figures: dict[str, Any] = widest.figures
    return (
        f"Telling {best.name} from {widest.subjects[1]} ({100 * figures['difference']:+.2f} pp) "
        f"apart would take about {figures['examples_needed']:,} test examples per seed "
        f"(McNemar power approximation, {power_wording(figures['seeds'])}; formula under "
        "Statistical significance)."
    )


def bottom_line(
    group_name: str,
    stats: Sequence[MethodStats],
    recs: Sequence[Recommendation],
    comparisons: Sequence[PairComparison],
    memory_key: str | None,
) -> BottomLine:
    """The bottom line of one experiment's measured methods (names = labels, as in `recs`)."""
    line = BottomLine(group_name)
    measured = [s for s in stats if not s.reference and s.mean.get(ACCURACY) is not None]
    best_rec = next((r for r in recs if r.kind == "best"), None)
    if best_rec is None or not measured:
        line.text = "No method finished with an accuracy: nothing to recommend."
        return line
    best = next(s for s in measured if s.name == best_rec.subjects[0])
    line.best = best.name
    if len(measured) == 1:
        line.text = (
            f"Only {best.name} has an accuracy ({percent(best.mean[ACCURACY])}): there is no "
            "other method to compare it with."
        )
        return line
    parts = [_lead(best, measured, recs, line)]
    group = [s for s in measured if s is best or s.name in line.tied]
    keys = [k for k in (memory_key, "train_time_s", "model_size_mb") if k is not None]
    parts.append(_constraints(measured, group, best, keys, comparisons, line))
    parts.append(_evidence(comparisons, measured, line))
    parts.append(_needed(best, recs))
    line.text = " ".join(p for p in parts if p)
    return line
