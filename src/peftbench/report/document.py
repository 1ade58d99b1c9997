"""The report as a list of blocks, and the tables in it, independent of the output format.

A block is `(kind, payload)`: h1, h2, h3, p and lead (the bottom line) carry text; list and
warn a list of texts; table a `Table`; recs a list of `Recommendation`; plot a `plots.Plot`;
code a (title, text) pair. `render` turns the same blocks into Markdown and HTML; the
section order is in `report.sections`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from peftbench.report.columns import PUBLISHED_MEMORY_KEY, Column, visible_columns
from peftbench.report.power import FORMULA
from peftbench.report.runs import (
    FIGURES,
    MethodStats,
    Run,
    as_dict,
    by_method,
    one_line,
    precisions_of,
)
from peftbench.report.significance import (
    MethodIntervals,
    PairComparison,
    SeedComparison,
    Settings,
    Statistics,
    fmt_p,
)
from peftbench.stats import METRICS, Interval

REFERENCE_GROUP = "published (reference study)"
PUBLISHED_MEMORY = Column(
    PUBLISHED_MEMORY_KEY,
    "GPU memory, published (MB)",
    lambda record: None,
    lambda value: "—" if value is None else f"{value:,.0f}",
)


@dataclass
class Table:
    """A table of already formatted cells; `marks` gives a CSS class per row ('' for none)."""

    headers: list[str]
    rows: list[list[str]]
    marks: list[str] = field(default_factory=list)


Block = tuple[str, Any]  # (kind, payload): h1 h2 h3 p list warn table recs plot code


def _cell(column: Column, stats: MethodStats) -> str:
    """A summary cell: the mean, ± the sample std when there are several seeds."""
    mean = stats.mean.get(column.key)
    if mean is None:
        return "—"
    text = column.fmt(_whole(mean))
    std = stats.std.get(column.key)
    return f"{text} ± {column.fmt(_whole(std))}" if std else text


def _whole(value: float | None) -> Any:
    """Integral floats as ints, so counts print without a trailing '.0'."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _status(stats: MethodStats) -> str:
    if stats.reference:
        return REFERENCE_GROUP
    parts = [f"{stats.n_seeds} success"] if stats.n_seeds else []
    parts += [f"{len(stats.failures)} not successful"] if stats.failures else []
    return ", ".join(parts) or "—"


def summary_table(runs: Sequence[Run], stats: Sequence[MethodStats]) -> Table:
    """Mean ± std per method (and experiment), reference rows last and marked."""
    shown = {c.key for c in visible_columns([r.record for r in runs if r.ok])}
    reference = any(s.reference for s in stats)
    if reference:
        shown |= {key for s in stats if s.reference for key in s.mean}
    columns = [c for c in FIGURES if c.key in shown] + ([PUBLISHED_MEMORY] if reference else [])
    several = len({s.group for s in stats}) > 1
    members = by_method(runs)
    precision = bool(precisions_of(runs))  # the column appears where runs recorded one
    headers = (["experiment"] if several else []) + ["method", "status", "n seeds"]
    headers += ["precision"] if precision else []
    table = Table(headers + [c.label for c in columns], [])
    for s in stats:
        seeds = "—" if s.reference else str(s.n_seeds)
        row = ([s.group] if several else []) + [s.label, _status(s), seeds]
        if precision:
            row.append(", ".join(precisions_of(members.get((s.group, s.label), []))) or "—")
        table.rows.append(row + [_cell(c, s) for c in columns])
        table.marks.append("published" if s.reference else ("" if s.n_seeds else "failed"))
    return table


def failures_table(runs: Sequence[Run]) -> Table | None:
    """Failed and canceled runs with their error, or None when every run succeeded."""
    bad = [run for run in runs if not run.ok]
    if not bad:
        return None
    table = Table(
        ["experiment", "method", "run", "seed", "status", "error", "epochs completed"], []
    )
    for run in bad:
        error = as_dict(run.record.get("error"))
        message = f"{error.get('type', '')}: {error.get('message', '')}" if error else "—"
        table.rows.append(
            [
                run.group,
                run.label,
                str(run.record.get("run_id")),
                str(run.seed),
                str(run.record.get("status")),
                one_line(message),
                str(error.get("epoch_reached", "—")) if error else "—",
            ]
        )
        table.marks.append("failed")
    return table


def runs_table(runs: Sequence[Run]) -> Table:
    """Every run on its own row, all columns that hold a value: summary.md and the report's
    run table. The experiment and label columns appear only where they tell runs apart."""
    columns = visible_columns([run.record for run in runs])
    several = len({run.group for run in runs}) > 1
    labelled = any(run.label != str(run.record.get("run_info", {}).get("method")) for run in runs)
    headers = (["experiment"] if several else []) + (["label"] if labelled else [])
    table = Table(headers + [c.label for c in columns], [])
    for run in runs:
        lead = ([run.group] if several else []) + ([run.label] if labelled else [])
        table.rows.append(lead + [c.fmt(c.get(run.record)) for c in columns])
        table.marks.append("" if run.ok else "failed")
    return table


def statistics_blocks(statistics: Statistics, several: bool) -> list[Block]:
    """The significance section: how it is computed, interval table, pairwise table."""
    blocks: list[Block] = [
        ("h2", "Statistical significance"),
        ("p", describe(statistics.settings)),
    ]
    if statistics.messages:
        blocks.append(("warn", list(statistics.messages)))
    blocks.append(("h3", "Confidence intervals"))
    headers, rows = interval_rows(statistics.intervals, several)
    if rows:
        blocks.append(("table", Table(headers, rows)))
    else:
        blocks.append(("p", "No interval: no run saved predictions, no method has two seeds."))
    one_seed = [
        f"{m.group} / {m.label}" if several else m.label
        for m in statistics.intervals
        if m.n_seeds == 1
    ]
    if one_seed:
        blocks.append(
            ("p", f"One successful seed, so no across-seed interval: {', '.join(one_seed)}.")
        )
    blocks.append(("h3", "Pairwise comparisons"))
    pairs = [pair for group in statistics.comparisons.values() for pair in group]
    if pairs:
        headers, rows = comparison_rows(pairs, several, statistics.settings.alpha)
        blocks.append(("table", Table(headers, rows)))
    else:
        blocks.append(
            (
                "p",
                "No pairwise comparison: it needs the saved predictions of two methods run "
                "with the same seed.",
            )
        )
    return blocks


def _pct(value: float) -> str:
    return f"{100 * value:.2f}"


def fmt_interval(interval: Interval, signed: bool = False) -> str:
    """A fraction interval in percent (points when signed), e.g. '[-0.62, +0.64]'."""
    sign = "+" if signed else ""
    return f"[{100 * interval.low:{sign}.2f}, {100 * interval.high:{sign}.2f}]"


def interval_rows(
    methods: Sequence[MethodIntervals], several: bool
) -> tuple[list[str], list[list[str]]]:
    """Headers and rows of the interval table: one row per run, one per method across seeds."""
    headers = (["experiment"] if several else []) + [
        "method",
        "seed",
        "run",
        "n test",
        "accuracy (%)",
        "accuracy CI (%)",
        "macro-F1 (%)",
        "macro-F1 CI (%)",
    ]
    rows = []
    for m in methods:
        lead = [m.group] if several else []
        for run in m.runs:
            cells = [str(run.seed), run.run_id, f"{run.n:,}"]
            for metric in METRICS:
                interval = run.intervals[metric]
                cells += [_pct(interval.estimate), fmt_interval(interval)]
            rows.append(lead + [m.label] + cells)
        if m.across_seeds:
            cells = [f"mean of {m.n_seeds}", "across seeds", "—"]
            for metric in METRICS:
                interval = m.across_seeds.get(metric)
                cells += (
                    [_pct(interval.estimate), fmt_interval(interval)] if interval else ["—", "—"]
                )
            rows.append(lead + [m.label] + cells)
    return headers, rows


def _verdict(seed: SeedComparison, alpha: float) -> str:
    """'yes', or 'no' with why, where the other columns could seem to say yes: the McNemar p
    counts before Holm's correction, or the bootstrap interval excludes 0 though McNemar's
    exact test (the one judged) does not."""
    if seed.significant:
        return "yes"
    if seed.mcnemar.p_value <= alpha:
        return "no (significant before correction)"
    interval = seed.bootstrap.interval
    if interval.low > 0 or interval.high < 0:
        return "no (CI excludes 0, McNemar does not)"
    return "no"


def comparison_rows(
    pairs: Sequence[PairComparison], several: bool, alpha: float
) -> tuple[list[str], list[list[str]]]:
    """Headers and rows of the significance table: one row per seed, a summary per pair."""
    headers = (["experiment"] if several else []) + [
        "A",
        "B",
        "seed",
        "n test",
        "A − B (pp)",
        "CI (pp)",
        "only A right / only B right",
        "McNemar p",
        "Holm p",
        "significant",
    ]
    rows = []
    for pair in pairs:
        lead = ([pair.group] if several else []) + [pair.a, pair.b]
        for s in pair.seeds:
            rows.append(
                lead
                + [
                    str(s.seed),
                    f"{s.n:,}",
                    f"{100 * s.difference:+.2f}",
                    fmt_interval(s.bootstrap.interval, signed=True),
                    f"{s.mcnemar.b:,} / {s.mcnemar.c:,}",
                    fmt_p(s.mcnemar.p_value),
                    fmt_p(s.holm_p),
                    _verdict(s, alpha),
                ]
            )
        if len(pair.seeds) > 1:
            ci = fmt_interval(pair.across_seeds, signed=True) if pair.across_seeds else "—"
            verdict = "yes" if pair.significant else "no"
            rows.append(
                lead
                + [
                    f"mean of {len(pair.seeds)}",
                    "—",
                    f"{100 * pair.mean_difference:+.2f}",
                    ci,
                    "—",
                    "—",
                    f"max {fmt_p(pair.p_value)}",
                    f"{verdict} ({pair.significant_seeds}/{len(pair.seeds)} seeds)",
                ]
            )
    return headers, rows


def describe(settings: Settings) -> str:
    """How the intervals and tests are computed, in words, for the report."""
    level = f"{100 * settings.level:g} %"
    return (
        f"Per run: {level} percentile bootstrap intervals over test examples "
        f"({settings.resamples:,} resamples). Across seeds: mean ± t interval of the per-seed "
        f"values (n − 1 degrees of freedom). Between methods, per seed both ran on the same test "
        f"examples: McNemar's exact test on the examples only one of them got right, and a "
        f"paired bootstrap {level} interval of the accuracy difference A − B (A: the higher "
        f"mean). McNemar p-values are Holm–Bonferroni corrected over all comparisons of the "
        f"experiment; significant means Holm p ≤ {settings.alpha:g}. With several seeds, a pair "
        f"counts as significant only when every seed's comparison is, in the same direction; "
        f"the summary row gives the mean difference and the t interval of the per-seed "
        f"differences. The verdict is the corrected McNemar test: “no (significant before "
        f"correction)” marks a difference that would count alone but not among all the "
        f"comparisons made; “no (CI excludes 0, McNemar does not)” one where the bootstrap "
        f"interval and the exact test disagree, as they can when few examples are got right "
        f"by one method only. Test examples needed to tell a "
        f"difference apart (bottom line, recommendations): {FORMULA}, 80 % power; with several "
        f"seeds, 80 % power that every seed finds it (each seed's test at 0.8^(1/seeds))."
    )
