"""Recommendations from the numbers: pure functions over plain figures, no I/O.

One rule decides whether a method is distinguishable from the most accurate one, and every
recommendation uses it: `report.findings` (the paired tests where both methods' predictions
were compared, else the binomial-noise rule). A method is called better only when its lead is
significant; "the best group" is the best method and every method not distinguishable from
it, and the cheapest picks are chosen inside that group.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from peftbench.report.cost_noise import tied_on, ties_note
from peftbench.report.findings import (
    INCONSISTENT,
    Recommendation,
    most_accurate,
    noise_warnings,
)
from peftbench.report.ranking import (
    ACCURACY,
    accuracy_noise,
    binomial_half_width,
    cost_label,
    dominates,
    fmt_figure,
    join_words,
    pareto_front,
    percent,
    pp,
    rank,
)
from peftbench.report.runs import MethodStats
from peftbench.report.significance import PairComparison, find_comparison, p_is
from peftbench.stats import DEFAULT_ALPHA

__all__ = [
    "ACCURACY",
    "MethodStats",
    "Recommendation",
    "accuracy_noise",
    "best_group",
    "binomial_half_width",
    "cheapest_within",
    "dominates",
    "failure_warnings",
    "most_accurate",
    "noise_warnings",
    "pareto_front",
    "rank",
    "recommend",
]


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


def best_group(
    stats: Sequence[MethodStats],
    comparisons: Sequence[PairComparison] = (),
    alpha: float = DEFAULT_ALPHA,
) -> list[MethodStats]:
    """The most accurate method and every method not distinguishable from it (the one tie
    rule), in input order; [] when no method has an accuracy."""
    best = most_accurate(stats)
    if best is None:
        return []
    return _tied_group(stats, best, noise_warnings(stats, comparisons, alpha))


def _tied_group(
    stats: Sequence[MethodStats], best: MethodStats, findings: Sequence[Recommendation]
) -> list[MethodStats]:
    tied = {f.subjects[1] for f in findings if f.kind == "noise"}
    return [s for s in stats if s is best or s.name in tied]


def cheapest_within(
    group: Sequence[MethodStats], cost_key: str, best: MethodStats | None = None
) -> MethodStats | None:
    """The best method by `cost_key` within a group (e.g. `best_group`), or None; `best` when
    given wins ties, so a method is only ever picked for being strictly cheaper."""
    by_name = {s.name: s for s in group}
    ranked = rank({s.name: s.mean for s in group}, cost_key)
    if not ranked:
        return None
    if best is None:
        return by_name[ranked[0]]
    for name in ranked:  # cheapest first, down to the best itself
        candidate = by_name[name]
        if candidate is best:
            return best
        if candidate.mean[cost_key] != best.mean.get(cost_key) and not tied_on(
            best, candidate, cost_key
        ):
            return candidate  # strictly cheaper, beyond the noise
        # within its noise of the best (memory): it does not rank; a costlier one may
    return best


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
    reasons = [tie_reason(t) for t in ties]
    text += (
        f", but not distinguishable from {join_words(reasons)}: choose among them by cost "
        "(the cheapest picks below)."
    )
    figures["tied_with"] = [t.subjects[1] for t in ties]
    return Recommendation("best", "Highest accuracy, no clear lead", text, (best.name,), figures)


def tie_reason(tie: Recommendation) -> str:
    """'LoRA (Holm-adjusted McNemar p = 0.52)' or 'LoRA (within measurement noise)'."""
    p = tie.figures.get("p_value")
    if tie.headline == INCONSISTENT:
        why = "significantly more accurate on the seeds both ran"
    elif p is not None:
        why = f"Holm-adjusted McNemar {p_is(p)}"
    else:
        why = "within measurement noise"
    return f"{tie.subjects[1]} ({why})"


def _cheapest_rec(
    group: Sequence[MethodStats],
    best: MethodStats,
    cost_key: str,
    comparisons: Sequence[PairComparison] = (),
) -> Recommendation | None:
    """The cheapest method by one cost among those not distinguishable from the best."""
    pick = cheapest_within(group, cost_key, best)
    if pick is None:
        return None
    headline = f"Cheapest by {cost_label(cost_key)} among the best group"
    cost = pick.mean[cost_key]
    figures: dict[str, Any] = {cost_key: cost, ACCURACY: pick.mean[ACCURACY]}
    if pick is best:
        text = (
            f"{best.name} itself ({fmt_figure(cost_key, cost)}): no method not distinguishable "
            f"from it in accuracy ({percent(best.mean[ACCURACY])}) needs less."
        )
        note, tied = ties_note(pick, group, cost_key)
        if tied:
            figures["tied_on_cost"] = tied
        return Recommendation("cheapest", headline, text + note, (pick.name,), figures)
    text = f"{pick.name}, {fmt_figure(cost_key, cost)}"
    best_cost = best.mean.get(cost_key)
    if best_cost is not None:
        figures[f"best_{cost_key}"] = best_cost
        text += f" against {fmt_figure(cost_key, best_cost)} for {best.name}"
        if best_cost:
            change = (cost - best_cost) / best_cost
            figures["relative_change"] = change
            text += f" ({100 * change:+.1f} %)"
    behind = best.mean[ACCURACY] - pick.mean[ACCURACY]
    text += (
        f", at accuracy {percent(pick.mean[ACCURACY])}, {pp(behind)} below "
        f"{best.name} ({percent(best.mean[ACCURACY])})"
    )
    figures["best_accuracy"] = best.mean[ACCURACY]
    pair = find_comparison(comparisons, best.name, pick.name)
    if pair is not None and pair.significant:  # pick ahead on the seeds both ran
        figures["p_value"] = pair.p_value
        text += (
            f": no clear winner, {pick.name} being significantly more accurate on the seeds "
            f"both ran (Holm-adjusted McNemar {p_is(pair.p_value)})."
        )
    elif pair is not None:
        figures["p_value"] = pair.p_value
        text += f": not distinguishable (Holm-adjusted McNemar {p_is(pair.p_value)})."
    else:
        text += ": within the measurement noise."
    note, tied = ties_note(pick, group, cost_key)
    if tied:
        figures["tied_on_cost"] = tied
    return Recommendation("cheapest", headline, text + note, (pick.name, best.name), figures)


def _pareto_rec(stats: Sequence[MethodStats], cost_key: str) -> Recommendation | None:
    points = {s.name: s.mean for s in stats}
    by_name = {s.name: s for s in stats}
    front = pareto_front(
        points, [ACCURACY, cost_key], lambda a, b, k: tied_on(by_name[a], by_name[b], k)
    )
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
    memory_key: str = "cuda_peak_allocated_mb",
    comparisons: Sequence[PairComparison] = (),
    alpha: float = DEFAULT_ALPHA,
) -> list[Recommendation]:
    """All findings for the methods of one experiment: best, cheapest, Pareto, warnings.

    `comparisons` are the experiment's paired tests (method names = their labels); pairs
    without one fall back to the binomial-noise rule. The cheapest picks are taken from the
    best group (`best_group`), the same methods the best one is called tied with.
    """
    measured = [s for s in stats if not s.reference]
    recs: list[Recommendation] = []
    best = most_accurate(measured)
    if best is not None:
        findings = noise_warnings(measured, comparisons, alpha)
        recs.append(_best_rec(best, [f for f in findings if f.kind == "noise"]))
        group = _tied_group(measured, best, findings)
        for cost_key in (memory_key, "train_time_s", "model_size_mb"):
            rec = _cheapest_rec(group, best, cost_key, comparisons)
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
