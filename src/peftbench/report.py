"""`peftbench report`: tables, plots and recommendations from one or more run directories.

`build_report` reads every record under each directory (skipping, with a message, what it
cannot use), averages each method's successful seeds, draws the figures, works out the
recommendations and writes a Markdown report, a self-contained HTML report and CSV files.
Where runs saved their test-set predictions, it also computes bootstrap intervals and paired
significance tests between methods (`peftbench.significance`), and the recommendations call a
method more accurate only when that difference is significant.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import re
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

from peftbench.errors import PeftbenchError
from peftbench.plots import PUBLISHED_MEMORY_KEY, LearningCurve, Plot, make_plots
from peftbench.recommend import (
    DEFAULT_MARGIN,
    MethodStats,
    Recommendation,
    pp,
    recommend,
)
from peftbench.results import RUNS_DIR, RunRecord, load_records
from peftbench.significance import (
    PairComparison,
    Settings,
    Statistics,
    comparison_rows,
    describe,
    interval_rows,
    run_statistics,
    significance_csv,
)
from peftbench.stats import DEFAULT_ALPHA, DEFAULT_LEVEL, DEFAULT_RESAMPLES
from peftbench.table import COLUMNS, COLUMNS_BY_KEY, Column, visible_columns

FORMATS = ("md", "html", "csv")
REFERENCE_GROUP = "published (reference study)"
NUMBER = re.compile(r"^(—|[-+]?[\d,.]+( ± [\d,.]+)?)$")  # cells right-aligned in HTML
PLOTS_DIR = "plots"
MD_FILE, HTML_FILE = "report.md", "report.html"
RUNS_CSV, SUMMARY_CSV = "report_runs.csv", "report_summary.csv"
SIGNIFICANCE_CSV = "report_significance.csv"
FIGURES = [c for c in COLUMNS if c.higher_is_better is not None]
PUBLISHED_MEMORY = Column(
    PUBLISHED_MEMORY_KEY,
    "GPU memory, published (MB)",
    lambda record: None,
    lambda value: "—" if value is None else f"{value:,.0f}",
)


@dataclass
class ReportResult:
    """What `build_report` wrote, what it skipped and why, and what it recommends."""

    files: list[Path] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    recommendations: dict[str, list[Recommendation]] = field(default_factory=dict)
    comparisons: dict[str, list[PairComparison]] = field(default_factory=dict)  # by experiment


@dataclass
class Run:
    """One record, with the experiment and method label it is reported under."""

    record: RunRecord
    group: str
    label: str
    run_dir: Path

    @property
    def ok(self) -> bool:
        return self.record.get("status") == "success"

    @property
    def seed(self) -> Any:
        return _info(self.record).get("seed")


def _dict(value: Any) -> dict[str, Any]:
    """The value if it is a dict, else an empty one (records are read, not trusted)."""
    return value if isinstance(value, dict) else {}


def _info(record: RunRecord) -> dict[str, Any]:
    return _dict(record.get("run_info"))


def _number(value: Any) -> float | int | None:
    """A finite number, or None for anything else (bools, strings, NaN)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return value if value == value and abs(value) != float("inf") else None


def load_runs(run_dirs: Sequence[Path]) -> tuple[list[Run], list[str]]:
    """Every valid record under the run dirs, and a message for each thing skipped."""
    loaded: list[tuple[Path, list[RunRecord]]] = []
    skipped: list[str] = []
    for run_dir in map(Path, run_dirs):
        if not run_dir.is_dir():
            skipped.append(f"{run_dir}: no such directory")
            continue
        records, bad = load_records(run_dir)
        skipped.extend(bad)
        if not records and not bad:
            skipped.append(
                f"{run_dir}: no run records (looked for {RUNS_DIR}/<run_id>/record.json)"
            )
        loaded.append((run_dir, records))
    names: dict[str, set[Path]] = {}
    for run_dir, records in loaded:
        for record in records:
            names.setdefault(_group_name(record, run_dir), set()).add(run_dir)
    runs = []
    for run_dir, records in loaded:
        for record in records:
            if _info(record).get("role") == "search":
                continue  # hyperparameter-search runs are reported through their final runs
            group = _group_name(record, run_dir)
            if len(names[group]) > 1:
                group = f"{group} ({run_dir.name})"
            info = _info(record)
            label = str(info.get("label") or info.get("method") or record.get("run_id"))
            runs.append(Run(record, group, label, run_dir))
    return runs, skipped


def _group_name(record: RunRecord, run_dir: Path) -> str:
    return str(_info(record).get("experiment") or run_dir.resolve().name)


def _failure(run: Run) -> str:
    """'seed 1: failed — Type: message (epochs completed: N)' for a run that did not succeed."""
    error = _dict(run.record.get("error"))
    text = f"seed {run.seed}: {run.record.get('status')}"
    if error:
        text += f" — {error.get('type', 'error')}: {_one_line(str(error.get('message', '')))}"
        if error.get("epoch_reached") is not None:
            text += f" (epochs completed: {error['epoch_reached']})"
    return text


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _by_method(runs: Iterable[Run]) -> dict[tuple[str, str], list[Run]]:
    """Runs grouped by (experiment, label), in order of first appearance."""
    grouped: dict[tuple[str, str], list[Run]] = {}
    for run in runs:
        grouped.setdefault((run.group, run.label), []).append(run)
    return grouped


def summarize(runs: Sequence[Run]) -> list[MethodStats]:
    """One MethodStats per (experiment, label): means and sample stds of successful seeds."""
    several = len({run.group for run in runs}) > 1
    stats = []
    for (group, label), members in _by_method(runs).items():
        good = [run for run in members if run.ok]
        entry = MethodStats(
            name=f"{group} / {label}" if several else label,
            n_seeds=len(good),
            failures=[_failure(run) for run in members if not run.ok],
            group=group,
            label=label,
        )
        for column in FIGURES:
            values = [v for v in (_number(column.get(run.record)) for run in good) if v is not None]
            if values:
                entry.mean[column.key] = statistics.fmean(values)
            if len(values) >= 2:
                entry.std[column.key] = statistics.stdev(values)
        sizes = [_number(_dict(run.record.get("data_info")).get("test_size")) for run in good]
        entry.test_size = next((int(n) for n in sizes if n), None)
        stats.append(entry)
    return stats


def with_intervals(stats: Sequence[MethodStats], statistics: Statistics) -> list[MethodStats]:
    """Each method with its accuracy interval: t over seeds, or the one run's bootstrap CI."""
    found = {(m.group, m.label): m for m in statistics.intervals}
    level = f"{100 * statistics.settings.level:g} %"
    result = []
    for s in stats:
        m = found.get((s.group, s.label))
        across = m.across_seeds.get("accuracy") if m else None
        if across is not None:
            kind = f"{level} t interval over {s.n_seeds} seeds"
            s = replace(s, accuracy_interval=(across.low, across.high), interval_kind=kind)
        elif m and s.n_seeds == 1 and len(m.runs) == 1:
            run = m.runs[0].intervals["accuracy"]
            kind = f"{level} bootstrap CI"
            s = replace(s, accuracy_interval=(run.low, run.high), interval_kind=kind)
        result.append(s)
    return result


def learning_curves(runs: Sequence[Run], stats: Sequence[MethodStats]) -> list[LearningCurve]:
    """Per-epoch eval accuracy and train loss of each method, averaged over successful seeds."""
    names = {(s.group, s.label): s.name for s in stats}
    curves = []
    for (group, label), members in _by_method(run for run in runs if run.ok).items():
        per_epoch: dict[int, list[dict[str, Any]]] = {}
        for run in members:
            epochs = _dict(run.record.get("train_info")).get("epochs") or []
            for item in epochs if isinstance(epochs, list) else []:
                if isinstance(item, dict) and _number(item.get("epoch")) is not None:
                    per_epoch.setdefault(int(item["epoch"]), []).append(item)
        curve = LearningCurve(names[(group, label)], label, group)
        for epoch in sorted(per_epoch):
            items = per_epoch[epoch]
            accs = [_number(_dict(i.get("eval")).get("accuracy")) for i in items]
            accs = [a for a in accs if a is not None]
            losses = [v for v in (_number(i.get("train_loss")) for i in items) if v is not None]
            curve.epochs.append(epoch)
            curve.accuracy.append(statistics.fmean(accs) if accs else None)
            curve.accuracy_std.append(statistics.stdev(accs) if len(accs) >= 2 else None)
            curve.train_loss.append(statistics.fmean(losses) if losses else None)
        curves.append(curve)
    return curves


def load_reference() -> list[MethodStats]:
    """The reference study's published figures, as MethodStats marked `reference`."""
    text = resources.files("peftbench").joinpath("reference", "study.json").read_text("utf-8")
    study = json.loads(text)
    stats = []
    for item in study["methods"]:
        figures = {
            "accuracy": item.get("accuracy"),
            "trainable_params": item.get("trainable_params"),
            "train_time_s": item.get("train_time_s"),
            PUBLISHED_MEMORY_KEY: item.get("gpu_memory_mb"),
        }
        stats.append(
            MethodStats(
                name=f"{item['label']} (published)",
                n_seeds=0,
                mean={k: v for k, v in figures.items() if v is not None},
                group=f"reference study: {study['model']} {study['dataset']}",
                label=item["label"],
                reference=True,
            )
        )
    return stats


def memory_key(runs: Sequence[Run]) -> str | None:
    """The memory figure plots and advice use: CUDA peak allocated if every run has it, else RSS."""
    good = [run.record for run in runs if run.ok]
    cuda, rss = COLUMNS_BY_KEY["cuda_peak_allocated_mb"], COLUMNS_BY_KEY["peak_rss_mb"]
    if good and all(_number(cuda.get(r)) is not None for r in good):
        return cuda.key
    for column in (rss, cuda):
        if any(_number(column.get(r)) is not None for r in good):
            return column.key
    return None


# ----- document model: the same blocks render to Markdown and to HTML -----


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
    headers = (["experiment"] if several else []) + ["method", "status", "n seeds"]
    table = Table(headers + [c.label for c in columns], [])
    for s in stats:
        seeds = "—" if s.reference else str(s.n_seeds)
        row = ([s.group] if several else []) + [s.label, _status(s), seeds]
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
        error = _dict(run.record.get("error"))
        message = f"{error.get('type', '')}: {error.get('message', '')}" if error else "—"
        table.rows.append(
            [
                run.group,
                run.label,
                str(run.record.get("run_id")),
                str(run.seed),
                str(run.record.get("status")),
                _one_line(message),
                str(error.get("epoch_reached", "—")) if error else "—",
            ]
        )
        table.marks.append("failed")
    return table


def runs_table(runs: Sequence[Run]) -> Table:
    """Every run on its own row, all columns that hold a value."""
    columns = visible_columns([run.record for run in runs])
    table = Table(["experiment", "label"] + [c.label for c in columns], [])
    for run in runs:
        table.rows.append([run.group, run.label] + [c.fmt(c.get(run.record)) for c in columns])
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
        headers, rows = comparison_rows(pairs, several)
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


def _flat(value: Any) -> str:
    """A metadata value on one line: dicts as 'k=v, …'."""
    if isinstance(value, dict):
        return ", ".join(f"{k}={_flat(v)}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(_flat(v) for v in value)
    return "—" if value is None else str(value)


def _setup_blocks(runs: Sequence[Run]) -> list[Block]:
    """Configuration of each method and environment of each experiment."""
    blocks: list[Block] = [("h2", "Configuration")]
    for (group, label), members in _by_method(runs).items():
        config = _info(members[0].record).get("config")
        title = f"{group} / {label} (run {members[0].record.get('run_id')})"
        blocks.append(("code", (title, json.dumps(config, indent=2, default=str))))
    searched = [
        (group, label, _info(members[0].record)["search"])
        for (group, label), members in _by_method(runs).items()
        if _info(members[0].record).get("search")
    ]
    if searched:
        blocks.append(("h2", "Hyperparameter search"))
        blocks.append(
            (
                "p",
                "Each value was trained on the training subset less a validation split and "
                "scored on that split (never on the test set); the best was then run with "
                "every seed.",
            )
        )
        rows = [
            [
                f"{group} / {label}",
                json.dumps(tried["values"]),
                "failed"
                if tried["validation_accuracy"] is None
                else f"{100 * tried['validation_accuracy']:.2f}",
                "chosen" if tried["values"] == search.get("chosen") else "",
            ]
            for group, label, search in searched
            for tried in search["tried"]
        ]
        headers = ["method", "values tried", "validation accuracy (%)", ""]
        blocks.append(("table", Table(headers, rows)))
    blocks.append(("h2", "Data"))
    for group in dict.fromkeys(run.group for run in runs):
        members = [run for run in runs if run.group == group]
        data_info = _dict(members[0].record.get("data_info"))
        balance = data_info.get("label_balance", {})
        blocks.append(
            (
                "p",
                f"{group}: {data_info.get('source', '?')}; train {data_info.get('train_size')} / "
                f"test {data_info.get('test_size')} examples; label balance "
                + "; ".join(f"{split} {counts}" for split, counts in balance.items()),
            )
        )
        for warning in data_info.get("warnings", []):
            blocks.append(("p", f"Data check: {warning}"))
    blocks.append(("h2", "Environment"))
    for group in dict.fromkeys(run.group for run in runs):
        members = [run for run in runs if run.group == group]
        meta = _dict(members[0].record.get("meta_info"))
        blocks.append(("h3", f"{group} (as recorded by run {members[0].record.get('run_id')})"))
        blocks.append(
            (
                "table",
                Table(
                    ["field", "value"],
                    [[str(k), _one_line(_flat(v), 2000)] for k, v in meta.items()],
                ),
            )
        )
        other = [str(r.record.get("run_id")) for r in members if r.record.get("meta_info") != meta]
        if other:
            blocks.append(("p", f"Runs with a different environment: {', '.join(other)}."))
    return blocks


def document(
    runs: Sequence[Run],
    stats: Sequence[MethodStats],
    recs: dict[str, list[Recommendation]],
    plots: Sequence[Plot],
    notes: Sequence[str],
    unreadable: Sequence[str],
    excluded: Sequence[str],
    run_dirs: Sequence[Path],
    margin: float,
    statistics: Statistics | None = None,
) -> list[Block]:
    """The report's content, independent of the output format."""
    done = sum(run.ok for run in runs)
    blocks: list[Block] = [
        ("h1", "peftbench report"),
        (
            "p",
            f"Generated {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')} from "
            f"{', '.join(str(d) for d in run_dirs)}: {len(runs)} runs, {done} successful, "
            f"{len(runs) - done} failed or canceled; unusable inputs skipped: {len(unreadable)}.",
        ),
    ]
    if unreadable or excluded:
        blocks += [("h2", "Skipped"), ("warn", [*unreadable, *excluded])]
    blocks += [
        ("h2", "Results"),
        (
            "p",
            "Means over successful seeds, ± the sample standard deviation (ddof = 1) where "
            "there are several; failed and canceled runs are excluded from the means.",
        ),
        ("table", summary_table(runs, stats)),
    ]
    if any(s.reference for s in stats):
        blocks.append(
            (
                "p",
                "Rows marked “published (reference study)” are the study's own "
                "figures for roberta-base on IMDb, not measured here; its GPU memory "
                "figure may not be measured the way peftbench measures memory.",
            )
        )
    failed = failures_table(runs)
    if failed:
        blocks += [("h3", "Failed and canceled runs"), ("table", failed)]
    several = len({s.group for s in stats if not s.reference}) > 1
    if statistics is not None:
        blocks += statistics_blocks(statistics, several)
    alpha = (statistics.settings if statistics else Settings()).alpha
    blocks += [
        ("h2", "Recommendations"),
        (
            "p",
            f"Worked out from the measured figures above; “within the margin” means at "
            f"most {pp(margin)} below the best accuracy. A method is called more accurate "
            f"than another only when the paired tests find the difference significant "
            f"(Holm-adjusted McNemar p ≤ {alpha:g}), or, for methods without saved "
            f"predictions, when the gap exceeds the measurement noise.",
        ),
    ]
    for group, items in recs.items():
        if len(recs) > 1:
            blocks.append(("h3", group))
        blocks.append(("recs", items))
    blocks.append(("h2", "Plots"))
    blocks += [("plot", plot) for plot in plots]
    if notes:
        blocks.append(("list", list(notes)))
    blocks += [("h2", "All runs"), ("table", runs_table(runs))]
    return blocks + _setup_blocks(runs)


# ----- renderers -----


def _md_cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def render_md(blocks: Sequence[Block], out_dir: Path) -> str:
    """The document as Markdown; plots as relative links to their PNG files."""
    lines: list[str] = []
    for kind, payload in blocks:
        if kind in ("h1", "h2", "h3"):
            lines += ["#" * int(kind[1]) + " " + payload, ""]
        elif kind == "p":
            lines += [payload, ""]
        elif kind == "list":
            lines += [f"- {item}" for item in payload] + [""]
        elif kind == "warn":
            lines += [f"- ⚠ {_md_cell(item)}" for item in payload] + [""]
        elif kind == "table":
            lines.append("| " + " | ".join(map(_md_cell, payload.headers)) + " |")
            lines.append("|" + " --- |" * len(payload.headers))
            lines += ["| " + " | ".join(map(_md_cell, row)) + " |" for row in payload.rows]
            lines.append("")
        elif kind == "recs":
            lines += [f"- **{r.headline}:** {r.text}" for r in payload] + [""]
        elif kind == "plot":
            rel = payload.png.relative_to(out_dir).as_posix()
            svg = payload.svg.relative_to(out_dir).as_posix()
            lines += [
                f"### {payload.title}",
                "",
                f"![{payload.title}]({rel})",
                "",
                f"{payload.caption} ([SVG]({svg}))",
                "",
            ]
        elif kind == "code":
            title, text = payload
            lines += [
                f"<details><summary>{html.escape(title)}</summary>",
                "",
                "```json",
                text,
                "```",
                "",
                "</details>",
                "",
            ]
    return "\n".join(lines)


CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:2rem auto;
max-width:1200px;padding:0 1rem;color:#1d232a;line-height:1.45}
h1{border-bottom:3px solid #2f6fb0;padding-bottom:.3rem}h2{margin-top:2rem;color:#234f7d}
table{border-collapse:collapse;margin:.8rem 0;font-size:.85rem;display:block;overflow-x:auto}
th,td{border:1px solid #c9d3de;padding:.3rem .55rem;text-align:left;white-space:nowrap}
th{background:#e8eef5;white-space:normal;vertical-align:bottom}td.n{text-align:right}
tr:nth-child(even) td{background:#f6f8fb}tr.published td{background:#fff6dd;font-style:italic}
tr.failed td{background:#fde8e8;color:#8a1c1c}
.warn{background:#fff3cd;border-left:5px solid #e0a800;padding:.5rem 1rem}
li.noise,li.failure{color:#8a5300}li.significant{color:#1b5e20}
figure{margin:1.2rem 0}img{max-width:100%;
border:1px solid #dde3ea}figcaption{font-size:.85rem;color:#4a5560}
pre{background:#f3f5f8;padding:.7rem;overflow-x:auto;font-size:.8rem}
"""


def _html_table(table: Table) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in table.headers)
    rows = []
    for i, row in enumerate(table.rows):
        mark = table.marks[i] if i < len(table.marks) else ""
        cls = f' class="{mark}"' if mark else ""
        cells = "".join(
            f'<td class="n">{html.escape(c)}</td>'
            if NUMBER.match(c)
            else f"<td>{html.escape(c)}</td>"
            for c in row
        )
        rows.append(f"<tr{cls}>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def render_html(blocks: Sequence[Block]) -> str:
    """The document as one self-contained HTML page: inline CSS, plots as base64 PNG."""
    parts: list[str] = []
    for kind, payload in blocks:
        if kind in ("h1", "h2", "h3"):
            parts.append(f"<{kind}>{html.escape(payload)}</{kind}>")
        elif kind == "p":
            parts.append(f"<p>{html.escape(payload)}</p>")
        elif kind in ("list", "warn"):
            items = "".join(f"<li>{html.escape(item)}</li>" for item in payload)
            parts.append(f'<ul class="{kind}">{items}</ul>')
        elif kind == "table":
            parts.append(_html_table(payload))
        elif kind == "recs":
            items = "".join(
                f'<li class="{r.kind}"><strong>{html.escape(r.headline)}:</strong> '
                f"{html.escape(r.text)}</li>"
                for r in payload
            )
            parts.append(f"<ul>{items}</ul>")
        elif kind == "plot":
            data = base64.b64encode(payload.png.read_bytes()).decode("ascii")
            parts.append(
                f'<figure><img src="data:image/png;base64,{data}" '
                f'alt="{html.escape(payload.title)}"><figcaption>'
                f"{html.escape(payload.caption)}</figcaption></figure>"
            )
        elif kind == "code":
            title, text = payload
            parts.append(
                f"<details><summary>{html.escape(title)}</summary>"
                f"<pre>{html.escape(text)}</pre></details>"
            )
    body = "\n".join(parts)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        "<title>peftbench report</title>"
        f"<style>{CSS}</style></head><body>\n{body}\n</body></html>\n"
    )


def runs_csv(runs: Sequence[Run]) -> str:
    """One row per run: experiment, label, every COLUMNS figure (raw values) and the error."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    extra = [
        "error_type",
        "error_message",
        "epoch_reached",
        "started_at",
        "finished_at",
        "config_hash",
        "run_dir",
    ]
    writer.writerow(["experiment", "label"] + [c.key for c in COLUMNS] + extra)
    for run in runs:
        error = _dict(run.record.get("error"))
        info = _info(run.record)
        values = [c.get(run.record) for c in COLUMNS] + [
            error.get("type"),
            error.get("message"),
            error.get("epoch_reached"),
            info.get("started_at"),
            info.get("finished_at"),
            run.record.get("config_hash"),
            str(run.run_dir),
        ]
        writer.writerow([run.group, run.label] + ["" if v is None else v for v in values])
    return buffer.getvalue()


def summary_csv(stats: Sequence[MethodStats]) -> str:
    """One row per method: n seeds, failures, mean and std of every figure."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    keys = [c.key for c in FIGURES] + [PUBLISHED_MEMORY_KEY]
    writer.writerow(
        ["experiment", "method", "source", "n_seeds", "n_failed"]
        + [f"{k}_{part}" for k in keys for part in ("mean", "std")]
    )
    for s in stats:
        row = [
            s.group,
            s.label,
            REFERENCE_GROUP if s.reference else "measured",
            s.n_seeds,
            len(s.failures),
        ]
        for key in keys:
            row += [s.mean.get(key, ""), s.std.get(key, "")]
        writer.writerow(row)
    return buffer.getvalue()


def _formats(formats: Iterable[str]) -> list[str]:
    wanted = list(dict.fromkeys(f.strip().lower() for f in formats if f.strip()))
    unknown = [f for f in wanted if f not in FORMATS]
    if unknown or not wanted:
        raise PeftbenchError(
            f"unknown report format(s) {', '.join(unknown) or '(none given)'}: "
            f"choose from {', '.join(FORMATS)}, e.g. --format md,html"
        )
    return wanted


def build_report(
    run_dirs: list[Path],
    out_dir: Path | None = None,
    formats: tuple[str, ...] = FORMATS,
    reference: bool = False,
    margin: float = DEFAULT_MARGIN,
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
    try:
        settings = Settings(resamples=resamples, level=level, alpha=alpha)
    except ValueError as exc:
        raise PeftbenchError(f"report statistics: {exc}") from exc
    run_dirs = [Path(d) for d in run_dirs]
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
    excluded = [
        f"{r.group} / {r.label}, {_failure(r)}: excluded from the means" for r in runs if not r.ok
    ]
    statistics = run_statistics(runs, settings)
    stats = with_intervals(summarize(runs), statistics)
    groups = list(dict.fromkeys(s.group for s in stats))
    mem = {group: memory_key([run for run in runs if run.group == group]) for group in groups}
    recs = {
        group: recommend(
            [replace(s, name=s.label) for s in stats if s.group == group],
            margin,
            mem[group] or "peak_rss_mb",
            statistics.comparisons.get(group, []),
            alpha,
        )
        for group in groups
    }
    shown = stats + (load_reference() if reference else [])
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    result = ReportResult(
        skipped=unreadable + excluded + statistics.messages,
        recommendations=recs,
        comparisons=statistics.comparisons,
    )
    plots: list[Plot] = []
    notes: list[str] = []
    if "md" in wanted or "html" in wanted:
        plots, notes = make_plots(shown, learning_curves(runs, stats), mem, out_dir / PLOTS_DIR)
        result.files += [p for plot in plots for p in (plot.png, plot.svg)]
    blocks = document(
        runs, shown, recs, plots, notes, unreadable, excluded, run_dirs, margin, statistics
    )
    outputs = {
        "md": [(MD_FILE, lambda: render_md(blocks, out_dir))],
        "html": [(HTML_FILE, lambda: render_html(blocks))],
        "csv": [(RUNS_CSV, lambda: runs_csv(runs)), (SUMMARY_CSV, lambda: summary_csv(shown))],
    }
    if any(statistics.comparisons.values()):
        outputs["csv"].append((SIGNIFICANCE_CSV, lambda: significance_csv(statistics)))
    for fmt in wanted:
        for name, render in outputs[fmt]:
            (out_dir / name).write_text(render(), encoding="utf-8")
            result.files.append(out_dir / name)
    return result
