"""The report's blocks as Markdown and self-contained HTML, and its figures as CSV files.

`summary.md` / `summary.csv` (one row per run, in the config's method order) are the one
results table: the runner writes them after an experiment and the report rewrites them with
the same columns. `methods.csv` holds the per-method means, `significance.csv` the paired tests.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import re
from collections.abc import Sequence
from pathlib import Path

from peftbench.report.columns import COLUMNS, PUBLISHED_MEMORY_KEY
from peftbench.report.document import REFERENCE_GROUP, Block, Table, runs_table
from peftbench.report.paths import scrub
from peftbench.report.runs import FIGURES, MethodStats, Run, as_dict, info
from peftbench.report.significance import Statistics

NUMBER = re.compile(r"^(—|[-+]?[\d,.]+( ± [\d,.]+)?)$")  # cells right-aligned in HTML
SUMMARY_MD, SUMMARY_CSV = "summary.md", "summary.csv"
METHODS_CSV, SIGNIFICANCE_CSV = "methods.csv", "significance.csv"


def _md_cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def render_md(blocks: Sequence[Block], out_dir: Path) -> str:
    """The document as Markdown; plots as relative links to their PNG files."""
    lines: list[str] = []
    for kind, payload in blocks:
        if kind in ("h1", "h2", "h3"):
            lines += ["#" * int(kind[1]) + " " + payload, ""]
        elif kind in ("p", "lead"):
            lines += [payload, ""]
        elif kind == "list":
            lines += [f"- {item}" for item in payload] + [""]
        elif kind == "warn":
            lines += [f"- ⚠ {_md_cell(item)}" for item in payload] + [""]
        elif kind == "table":
            lines.append(table_md(payload))
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
.lead{font-size:1.05rem;background:#eef4fa;border-left:5px solid #2f6fb0;padding:.6rem 1rem}
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
        elif kind == "lead":
            parts.append(f'<p class="lead">{html.escape(payload)}</p>')
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


def table_md(table: Table) -> str:
    """One table as Markdown."""
    lines = ["| " + " | ".join(map(_md_cell, table.headers)) + " |"]
    lines.append("|" + " --- |" * len(table.headers))
    lines += ["| " + " | ".join(map(_md_cell, row)) + " |" for row in table.rows]
    return "\n".join(lines) + "\n"


def summary_md(runs: Sequence[Run], out_dir: Path) -> str:
    """summary.md: the runs table as Markdown, machine paths removed."""
    return scrub(table_md(runs_table(runs)), out_dir)


def summary_csv(runs: Sequence[Run], out_dir: Path) -> str:
    """One row per run: every COLUMNS figure (raw values: fractions, seconds, bytes as MiB),
    then the experiment, label, error and timestamps."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    extra = ["experiment", "label", "error_type", "error_message", "epoch_reached"]
    extra += ["started_at", "finished_at", "config_hash"]
    writer.writerow([c.key for c in COLUMNS] + extra)
    for run in runs:
        error = as_dict(run.record.get("error"))
        run_info = info(run.record)
        values = [c.get(run.record) for c in COLUMNS] + [
            run.group,
            run.label,
            error.get("type"),
            error.get("message"),
            error.get("epoch_reached"),
            run_info.get("started_at"),
            run_info.get("finished_at"),
            run.record.get("config_hash"),
        ]
        writer.writerow(["" if v is None else scrub(str(v), out_dir) for v in values])
    return buffer.getvalue()


def write_summary(output_dir: Path, runs: Sequence[Run]) -> str:
    """Write summary.md and summary.csv into output_dir; return the Markdown table."""
    table = summary_md(runs, output_dir)
    (output_dir / SUMMARY_MD).write_text(table, encoding="utf-8")
    (output_dir / SUMMARY_CSV).write_text(summary_csv(runs, output_dir), encoding="utf-8")
    return table


def methods_csv(stats: Sequence[MethodStats]) -> str:
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


def significance_csv(statistics: Statistics) -> str:
    """One row per seed comparison: both runs, difference, interval, counts and p-values."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(
        [
            "experiment",
            "method_a",
            "method_b",
            "seed",
            "run_a",
            "run_b",
            "n_test",
            "accuracy_difference",
            "ci_low",
            "ci_high",
            "ci_level",
            "bootstrap_p",
            "only_a_right",
            "only_b_right",
            "mcnemar_p",
            "holm_p",
            "significant",
        ]
    )
    for group, pairs in statistics.comparisons.items():
        for pair in pairs:
            for s in pair.seeds:
                boot = s.bootstrap
                writer.writerow(
                    [group, pair.a, pair.b, s.seed, s.run_a, s.run_b, s.n, boot.difference]
                    + [boot.low, boot.high, boot.level, boot.p_value, s.mcnemar.b, s.mcnemar.c]
                    + [s.mcnemar.p_value, s.holm_p, s.significant]
                )
    return buffer.getvalue()
