"""`peftbench report`: tables, plots and recommendations from one or more run directories.

`build_report` reads every record under each directory (`runs`, figures from `columns`),
computes bootstrap intervals and paired significance tests where runs saved their
predictions (`significance`), works out the recommendations (`recommend`, with `ranking`
and `power`) and the bottom line read off them (`bottom_line`), draws the figures
(`figures`: `plots`, `cost_plots`), lays out the sections (`sections`, `document`) and
writes Markdown, self-contained HTML and CSV files (`render`), naming no path of the
machine (`paths`). The modules import one another in one direction only: no circle.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

from peftbench.errors import PeftbenchError
from peftbench.report import render
from peftbench.report.bottom_line import BottomLine, bottom_line
from peftbench.report.figures import make_plots
from peftbench.report.paths import shown_path
from peftbench.report.recommend import Recommendation, recommend
from peftbench.report.runs import (
    MethodStats,
    Run,
    failure_text,
    learning_curves,
    load_reference,
    load_runs,
    memory_key,
    runs_from_records,
    summarize,
)
from peftbench.report.sections import ReportInputs, document, scrub_blocks
from peftbench.report.significance import (
    PairComparison,
    Settings,
    Statistics,
    run_statistics,
    with_intervals,
)
from peftbench.results import RunRecord
from peftbench.stats import DEFAULT_ALPHA, DEFAULT_LEVEL, DEFAULT_RESAMPLES

__all__ = [
    "FORMATS",
    "ReportResult",
    "build_report",
    "load_runs",
    "memory_key",
    "summarize",
    "write_summary",
]

FORMATS = ("md", "html", "csv")
PLOTS_DIR = "plots"
MD_FILE, HTML_FILE = "report.md", "report.html"


@dataclass
class ReportResult:
    """What `build_report` wrote, what it skipped and why, and what it recommends."""

    files: list[Path] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    recommendations: dict[str, list[Recommendation]] = field(default_factory=dict)
    bottom_lines: dict[str, BottomLine] = field(default_factory=dict)  # by experiment
    comparisons: dict[str, list[PairComparison]] = field(default_factory=dict)  # by experiment


def write_summary(output_dir: Path, records: list[RunRecord]) -> str:
    """summary.md and summary.csv of one experiment's records, in the order given (the
    runner's results table); returns the Markdown table."""
    return render.write_summary(Path(output_dir), runs_from_records(records, Path(output_dir)))


def _formats(formats: Iterable[str]) -> list[str]:
    wanted = list(dict.fromkeys(f.strip().lower() for f in formats if f.strip()))
    unknown = [f for f in wanted if f not in FORMATS]
    if unknown or not wanted:
        raise PeftbenchError(
            f"unknown report format(s) {', '.join(unknown) or '(none given)'}: "
            f"choose from {', '.join(FORMATS)}, e.g. --format md,html"
        )
    return wanted


def _settings(resamples: int, level: float, alpha: float) -> Settings:
    try:
        return Settings(resamples=resamples, level=level, alpha=alpha)
    except ValueError as exc:
        raise PeftbenchError(f"report statistics: {exc}") from exc


def _load(run_dirs: list[Path], out_dir: Path | None) -> tuple[list[Run], list[str], Path]:
    """The runs, the skipped inputs and the output directory; PeftbenchError when unusable."""
    if not run_dirs:
        raise PeftbenchError("no run directory given: name at least one output directory")
    if out_dir is None:
        if len(run_dirs) > 1:
            raise PeftbenchError("several run directories: say where the report goes (--out DIR)")
        out_dir = run_dirs[0]
    runs, unreadable = load_runs(run_dirs)
    if not runs:
        detail = "; ".join(unreadable)
        raise PeftbenchError(
            f"no valid run record in {', '.join(map(str, run_dirs))} ({detail}): run "
            "`peftbench run CONFIG` first, or point at the output directory it wrote"
        )
    return runs, unreadable, Path(out_dir)


def _recommendations(
    runs: list[Run], stats: list[MethodStats], statistics: Statistics
) -> tuple[dict[str, list[Recommendation]], dict[str, BottomLine], dict[str, str | None]]:
    """Each experiment's recommendations, its bottom line, and the memory figure they (and
    the plots) use."""
    recs, lines, mem = {}, {}, {}
    for group in dict.fromkeys(s.group for s in stats):
        mem[group] = memory_key([run for run in runs if run.group == group])
        members = [replace(s, name=s.label) for s in stats if s.group == group]
        comparisons = statistics.comparisons.get(group, [])
        memory = mem[group] or "peak_rss_mb"
        recs[group] = recommend(members, memory, comparisons, statistics.settings.alpha)
        lines[group] = bottom_line(group, members, recs[group], comparisons, mem[group])
    return recs, lines, mem


def build_report(
    run_dirs: list[Path],
    out_dir: Path | None = None,
    formats: tuple[str, ...] = FORMATS,
    reference: bool = False,
    *,
    resamples: int = DEFAULT_RESAMPLES,
    level: float = DEFAULT_LEVEL,
    alpha: float = DEFAULT_ALPHA,
) -> ReportResult:
    """Write the report of the run dirs into out_dir (default: the one run dir); raise
    PeftbenchError for an unknown format, bad statistics settings, a missing out_dir, or no
    valid record at all. `resamples` and `level` set the bootstrap intervals, `alpha` the
    family-wise level of the Holm-corrected pairwise tests."""
    wanted = _formats(formats)
    settings = _settings(resamples, level, alpha)
    runs, unreadable, out_dir = _load([Path(d) for d in run_dirs], out_dir)
    excluded = [
        f"{r.group} / {r.label}, {failure_text(r)}: excluded from the means"
        for r in runs
        if not r.ok
    ]
    statistics = run_statistics(runs, settings)
    stats = with_intervals(summarize(runs), statistics)
    recs, lines, mem = _recommendations(runs, stats, statistics)
    shown = stats + (load_reference() if reference else [])
    out_dir.mkdir(parents=True, exist_ok=True)
    result = ReportResult(
        skipped=unreadable + excluded + statistics.messages,
        recommendations=recs,
        bottom_lines=lines,
        comparisons=statistics.comparisons,
    )
    inputs = ReportInputs(
        runs,
        shown,
        recs,
        statistics,
        unreadable=unreadable,
        excluded=excluded,
        sources=[shown_path(d, out_dir) for d in run_dirs],
        bottom_lines=lines,
    )
    if "md" in wanted or "html" in wanted:
        curves = learning_curves(runs, stats)
        best = {g: {line.best, *line.tied} for g, line in lines.items() if line.best}
        drawn = make_plots(shown, curves, mem, out_dir / PLOTS_DIR, best)
        inputs.plots, inputs.plot_notes = drawn
        result.files += [p for plot in inputs.plots for p in (plot.png, plot.svg)]
    for name, text in _outputs(wanted, inputs, out_dir):
        (out_dir / name).write_text(text(), encoding="utf-8")
        result.files.append(out_dir / name)
    return result


def _outputs(
    wanted: list[str], inputs: ReportInputs, out_dir: Path
) -> list[tuple[str, Callable[[], str]]]:
    """(file name, renderer) of every file the wanted formats write."""
    blocks = scrub_blocks(document(inputs), out_dir)
    outputs: dict[str, list[tuple[str, Callable[[], str]]]] = {
        "md": [
            (MD_FILE, lambda: render.render_md(blocks, out_dir)),
            (render.SUMMARY_MD, lambda: render.summary_md(inputs.runs, out_dir)),
        ],
        "html": [(HTML_FILE, lambda: render.render_html(blocks))],
        "csv": [
            (render.SUMMARY_CSV, lambda: render.summary_csv(inputs.runs, out_dir)),
            (render.METHODS_CSV, lambda: render.methods_csv(inputs.stats)),
        ],
    }
    statistics = inputs.statistics
    if statistics is not None and any(statistics.comparisons.values()):
        text = lambda: render.significance_csv(statistics)  # noqa: E731
        outputs["csv"].append((render.SIGNIFICANCE_CSV, text))
    return [item for fmt in wanted for item in outputs[fmt]]
