"""The reference study's accuracy orderings, tested on each measured experiment.

Shown with the published rows (`build_report(..., reference=True)`, `peftbench report
--reference`): the study ranks its methods by one published accuracy each (Full 89 % > QLoRA
88 % > LoRA 87 % > IA3 86 %), with no seeds and no test. For every pair of those methods this
section reads the experiment's own paired comparison (McNemar per seed, Holm-corrected, the
same one the pairwise table and the recommendations use) and says whether the study's order
holds here: significantly, only in direction, or reversed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from peftbench.report.document import Block, Table, fmt_interval
from peftbench.report.runs import Run, info, read_study
from peftbench.report.significance import PairComparison, find_comparison, fmt_p
from peftbench.stats import Interval

if TYPE_CHECKING:
    from peftbench.report.sections import ReportInputs

HOLDS = "holds (significant)"
SAME_DIRECTION = "same direction, not significant"
REVERSED = "reversed (significant)"
REVERSED_NOISE = "reversed, not significant"
TIE = "tie"
TITLE = "The reference study's orderings, tested here"


@dataclass(frozen=True)
class StudyMethod:
    label: str  # as the study names it, e.g. "QLoRA"
    method: str  # peftbench's method name, e.g. "qlora"
    accuracy: float  # published, a fraction


@dataclass(frozen=True)
class OrderingCheck:
    """The study's claim `higher` > `lower`, against one experiment's paired comparison."""

    higher: StudyMethod
    lower: StudyMethod
    comparison: PairComparison | None  # None: not both measured, or no seed in common
    lower_label: str = ""  # the lower method's label in the experiment
    reason: str = ""  # why there is no comparison

    @property
    def flipped(self) -> bool:
        """The comparison's A (its more accurate method here) is the study's lower one."""
        return self.comparison is not None and self.comparison.a == self.lower_label

    @property
    def difference(self) -> float | None:
        """Mean over seeds of accuracy(higher) - accuracy(lower) here, a fraction."""
        if self.comparison is None:
            return None
        d = self.comparison.mean_difference
        return -d if self.flipped else d

    @property
    def interval(self) -> tuple[Interval | None, str]:
        """The interval of `difference`: across seeds (t) with several, else the one seed's
        paired bootstrap; and what kind it is."""
        c = self.comparison
        if c is None:
            return None, ""
        interval, kind = (
            (c.across_seeds, "t, seeds")
            if c.across_seeds is not None
            else (c.seeds[0].bootstrap.interval, "bootstrap")
        )
        if self.flipped:
            interval = Interval(-interval.estimate, -interval.high, -interval.low, interval.level)
        return interval, kind

    @property
    def verdict(self) -> str:
        c, d = self.comparison, self.difference
        if c is None or d is None:
            return f"not compared: {self.reason}"
        if d == 0:
            return TIE
        if c.significant:
            return REVERSED if self.flipped else HOLDS
        return SAME_DIRECTION if d > 0 else REVERSED_NOISE


def study_methods() -> list[StudyMethod]:
    """The study's methods, most accurate first, as published."""
    methods = [
        StudyMethod(m["label"], m["method"], float(m["accuracy"]))
        for m in read_study()["methods"]
        if isinstance(m.get("accuracy"), int | float)
    ]
    return sorted(methods, key=lambda m: -m.accuracy)


def _labels_by_method(runs: Sequence[Run], group: str) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for run in runs:
        if run.group == group and run.ok:
            found.setdefault(str(info(run.record).get("method")), set()).add(run.label)
    return found


def check_orderings(
    ranked: Sequence[StudyMethod],
    runs: Sequence[Run],
    group: str,
    comparisons: Sequence[PairComparison],
) -> list[OrderingCheck]:
    """Every pair of `ranked` (`study_methods()`) the study orders (different published
    accuracies), checked against the experiment `group`; a method is found by its method name,
    and skipped with a reason when no label or several labels of the experiment ran it."""
    labels = _labels_by_method(runs, group)

    def label_of(m: StudyMethod) -> tuple[str | None, str]:
        found = sorted(labels.get(m.method, ()))
        if len(found) == 1:
            return found[0], ""
        if not found:
            return None, f"{m.method} has no successful run here"
        return None, f"several labels ran {m.method} here ({', '.join(found)})"

    checks = []
    for i, higher in enumerate(ranked):
        for lower in ranked[i + 1 :]:
            if higher.accuracy == lower.accuracy:
                continue
            (hi, why_hi), (lo, why_lo) = label_of(higher), label_of(lower)
            found = find_comparison(comparisons, hi, lo) if hi and lo else None
            reason = why_hi or why_lo or ("" if found else "no seed in common")
            checks.append(OrderingCheck(higher, lower, found, lo or "", reason))
    return checks


def _row(check: OrderingCheck) -> list[str]:
    c, d = check.comparison, check.difference
    interval, kind = check.interval
    published = 100 * (check.higher.accuracy - check.lower.accuracy)
    return [
        f"{check.higher.label} > {check.lower.label}",
        f"{published:+.2f}",
        "—" if d is None else f"{100 * d:+.2f}",
        "—" if interval is None else f"{fmt_interval(interval, signed=True)} ({kind})",
        "—" if c is None else f"{c.significant_seeds} of {len(c.seeds)}",
        "—" if c is None else fmt_p(c.p_value),
        check.verdict,
    ]


def _tally(checks: Sequence[OrderingCheck]) -> str:
    counts: dict[str, int] = {}
    for check in checks:
        key = check.verdict if check.comparison is not None else "not compared"
        counts[key] = counts.get(key, 0) + 1
    order = (HOLDS, SAME_DIRECTION, TIE, REVERSED_NOISE, REVERSED, "not compared")
    return "; ".join(f"{k}: {counts[k]}" for k in order if counts.get(k))


def study_orderings_section(inputs: ReportInputs) -> list[Block]:
    if inputs.statistics is None or not any(s.reference for s in inputs.stats):
        return []
    ranked = study_methods()
    level = f"{100 * inputs.statistics.settings.level:g} %"
    chain = " > ".join(f"{m.label} ({100 * m.accuracy:g} %)" for m in ranked)
    blocks: list[Block] = [
        ("h2", TITLE),
        (
            "p",
            f"The study ranks its methods {chain} by one published accuracy each, with no "
            "seeds and no test. Each row takes one of its pairwise claims and this "
            "experiment's paired comparison of the two methods (matched by method name): the "
            f"mean accuracy difference over seeds in the study's direction, its {level} "
            "interval (t over the per-seed differences with several seeds, the paired "
            "bootstrap with one), on how many seeds the Holm-corrected McNemar test finds it "
            "significant, and the largest Holm p. A claim holds only if it is significant on "
            "every seed in the study's direction.",
        ),
    ]
    for group, pairs in inputs.statistics.comparisons.items():
        checks = check_orderings(ranked, inputs.runs, group, pairs)
        if not checks:
            continue
        if inputs.several:
            blocks.append(("h3", group))
        blocks.append(("lead", f"Of the study's {len(checks)} orderings: {_tally(checks)}."))
        headers = [
            "study's claim",
            "study: higher − lower (pp)",
            "here: higher − lower (pp)",
            f"{level} interval (pp)",
            "significant seeds",
            "Holm p (largest)",
            "here",
        ]
        blocks.append(("table", Table(headers, [_row(check) for check in checks])))
    return blocks
