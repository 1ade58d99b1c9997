"""The report's sections, in reading order: each is a function from `ReportInputs` to blocks.

`SECTIONS` is the one list that says what the report contains and in which order; a new
section (memory by component, per-class metrics) is a function here and one entry there,
and a new figure is a function in `plots` or `cost_plots` added to `figures.make_plots`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from peftbench.report.bottom_line import BottomLine
from peftbench.report.document import (
    REFERENCE_GROUP,
    Block,
    Table,
    failures_table,
    runs_table,
    statistics_blocks,
    summary_table,
)
from peftbench.report.paths import scrub
from peftbench.report.plots import Plot
from peftbench.report.recommend import Recommendation
from peftbench.report.runs import (
    MethodStats,
    Run,
    as_dict,
    by_method,
    info,
    mixed_precision_warnings,
    one_line,
)
from peftbench.report.significance import Settings, Statistics
from peftbench.results import finite_number


@dataclass
class ReportInputs:
    """Everything a section may show, worked out once by `build_report`."""

    runs: list[Run]
    stats: list[MethodStats]  # measured methods, then published reference rows
    recommendations: dict[str, list[Recommendation]]  # by experiment
    statistics: Statistics | None
    plots: list[Plot] = field(default_factory=list)
    plot_notes: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    excluded: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)  # run directories as shown to the reader
    bottom_lines: dict[str, BottomLine] = field(default_factory=dict)  # by experiment

    @property
    def several(self) -> bool:
        return len({s.group for s in self.stats if not s.reference}) > 1


def _flat(value: Any) -> str:
    """A metadata value on one line: dicts as 'k=v, …'."""
    if isinstance(value, dict):
        return ", ".join(f"{k}={_flat(v)}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(_flat(v) for v in value)
    return "—" if value is None else str(value)


def configuration_section(inputs: ReportInputs) -> list[Block]:
    """The resolved config of each method (its first run)."""
    blocks: list[Block] = [("h2", "Configuration")]
    for (group, label), members in by_method(inputs.runs).items():
        config = info(members[0].record).get("config")
        title = f"{group} / {label} (run {members[0].record.get('run_id')})"
        blocks.append(("code", (title, json.dumps(config, indent=2, default=str))))
    return blocks


def grid_edges(label: str, search: dict[str, Any]) -> list[str]:
    """A note for each searched number whose chosen value is the largest or smallest of three
    or more tried: the best value may lie beyond the grid."""
    chosen = as_dict(search.get("chosen"))
    notes = []
    for key, values in as_dict(search.get("grid")).items():
        numbers = [v for v in values if finite_number(v) is not None]
        value = chosen.get(key)
        if len(set(numbers)) < 3 or value not in numbers:
            continue
        side = "largest" if value == max(numbers) else "smallest" if value == min(numbers) else ""
        if side:
            notes.append(
                f"{label}: {key} = {value:g} is the {side} value tried, so the best may lie "
                f"beyond the grid; extend it past {value:g} to be sure."
            )
    return notes


def search_section(inputs: ReportInputs) -> list[Block]:
    """The values each hyperparameter search tried and which one it chose."""
    searched = [
        (group, label, info(members[0].record)["search"])
        for (group, label), members in by_method(inputs.runs).items()
        if info(members[0].record).get("search")
    ]
    if not searched:
        return []
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
    blocks: list[Block] = [
        ("h2", "Hyperparameter search"),
        (
            "p",
            "Each value was trained on the training subset less a validation split and "
            "scored on that split (never on the test set); the best was then run with "
            "every seed.",
        ),
        ("table", Table(["method", "values tried", "validation accuracy (%)", ""], rows)),
    ]
    edges = [
        note
        for group, label, search in searched
        for note in grid_edges(f"{group} / {label}", search)
    ]
    return blocks + ([("warn", edges)] if edges else [])


def _data_line(group: str, record: dict[str, Any]) -> str:
    """Source, sizes, length and truncation, label balance of one experiment's data."""
    data_info = as_dict(record.get("data_info"))
    training = as_dict(as_dict(info(record).get("config")).get("training"))
    balance = as_dict(data_info.get("label_balance"))
    text = (
        f"{group}: {data_info.get('source', '?')}; train {data_info.get('train_size')} / "
        f"test {data_info.get('test_size')} examples"
    )
    mean_tokens = finite_number(data_info.get("mean_train_tokens"))
    if mean_tokens is not None:
        text += f"; mean train length {mean_tokens:,.0f} tokens"
    truncated = finite_number(data_info.get("train_truncated_fraction"))
    limit = training.get("max_length")
    at = f" at max_length {limit} tokens" if limit else ""
    if truncated is not None:
        text += f"; {100 * truncated:.1f} % of train examples truncated{at}"
    else:
        text += "; fraction truncated not recorded (older record)"
    columns = data_info.get("text_columns")
    if columns:
        pair = data_info.get("text_pair_column")
        text += f"; text from {' + '.join(map(str, columns))}" + (
            f", paired with {pair}" if pair else ""
        )
        mapping = as_dict(data_info.get("label_mapping"))
        text += f"; labels from {data_info.get('label_column')} ({mapping.get('order', '?')})"
    for note in data_info.get("splits") or []:
        text += f"; {note}"
    parts = "; ".join(f"{split} {counts}" for split, counts in balance.items())
    return text + (f"; label balance {parts}" if parts else "")


def data_section(inputs: ReportInputs) -> list[Block]:
    """What each experiment trained and tested on, and the data checks' warnings."""
    blocks: list[Block] = [("h2", "Data")]
    for group in dict.fromkeys(run.group for run in inputs.runs):
        record = next(run.record for run in inputs.runs if run.group == group)
        blocks.append(("p", _data_line(group, record)))
        warnings = as_dict(record.get("data_info")).get("warnings") or []
        blocks += [("p", f"Data check: {warning}") for warning in warnings]
    return blocks


def environment_section(inputs: ReportInputs) -> list[Block]:
    """Packages, machine and device of each experiment, and the runs that differ."""
    blocks: list[Block] = [("h2", "Environment")]
    for group in dict.fromkeys(run.group for run in inputs.runs):
        members = [run for run in inputs.runs if run.group == group]
        meta = as_dict(members[0].record.get("meta_info"))
        blocks.append(("h3", f"{group} (as recorded by run {members[0].record.get('run_id')})"))
        rows = [[str(k), one_line(_flat(v), 2000)] for k, v in meta.items()]
        blocks.append(("table", Table(["field", "value"], rows)))
        other = [str(r.record.get("run_id")) for r in members if r.record.get("meta_info") != meta]
        if other:
            blocks.append(("p", f"Runs with a different environment: {', '.join(other)}."))
    return blocks


def title_section(inputs: ReportInputs) -> list[Block]:
    runs = inputs.runs
    done = sum(run.ok for run in runs)
    blocks: list[Block] = [
        ("h1", "peftbench report"),
        (
            "p",
            f"Generated {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')} from "
            f"{', '.join(inputs.sources)}: {len(runs)} runs, {done} successful, "
            f"{len(runs) - done} failed or canceled; unusable inputs skipped: "
            f"{len(inputs.unreadable)}.",
        ),
    ]
    if inputs.unreadable or inputs.excluded:
        blocks += [("h2", "Skipped"), ("warn", [*inputs.unreadable, *inputs.excluded])]
    return blocks


def results_section(inputs: ReportInputs) -> list[Block]:
    blocks: list[Block] = [
        ("h2", "Results"),
        (
            "p",
            "Means over successful seeds, ± the sample standard deviation (ddof = 1) where "
            "there are several; failed and canceled runs are excluded from the means. Eval "
            "time is per evaluation of the test split (the run's total over its evaluations, "
            "one per epoch, divided by their number); eval throughput is test examples per "
            "second of evaluation; MFU is train FLOPs per second over the device's peak.",
        ),
        ("table", summary_table(inputs.runs, inputs.stats)),
    ]
    if any(s.reference for s in inputs.stats):
        blocks.append(
            (
                "p",
                f"Rows marked “{REFERENCE_GROUP}” are the study's own "
                "figures for roberta-base on IMDb, not measured here; its GPU memory "
                "figure may not be measured the way peftbench measures memory.",
            )
        )
    failed = failures_table(inputs.runs)
    if failed:
        blocks += [("h3", "Failed and canceled runs"), ("table", failed)]
    return blocks


def statistics_section(inputs: ReportInputs) -> list[Block]:
    if inputs.statistics is None:
        return []
    return statistics_blocks(inputs.statistics, inputs.several)


def bottom_line_section(inputs: ReportInputs) -> list[Block]:
    """One paragraph per experiment: which method to use, read off the recommendations."""
    blocks: list[Block] = [("h2", "Bottom line")]
    several = len(inputs.bottom_lines) > 1
    for group, line in inputs.bottom_lines.items():
        blocks.append(("lead", f"{group}: {line.text}" if several else line.text))
    mixed = mixed_precision_warnings(inputs.runs)
    return blocks + ([("warn", mixed)] if mixed else [])


def recommendations_section(inputs: ReportInputs) -> list[Block]:
    alpha = (inputs.statistics.settings if inputs.statistics else Settings()).alpha
    blocks: list[Block] = [
        ("h2", "Recommendations"),
        (
            "p",
            "Worked out from the measured figures above, with one rule for ties: a method "
            "is not distinguishable from another unless the paired tests find the difference "
            f"significant (Holm-adjusted McNemar p ≤ {alpha:g}, on every seed both ran), or, "
            "for methods without saved predictions, unless the gap exceeds the measurement "
            "noise. “Better” is said only of significant differences; the best group is the "
            "most accurate method and every method not distinguishable from it, and the "
            "cheapest picks come from that group.",
        ),
    ]
    for group, items in inputs.recommendations.items():
        if len(inputs.recommendations) > 1:
            blocks.append(("h3", group))
        blocks.append(("recs", items))
    return blocks


def plots_section(inputs: ReportInputs) -> list[Block]:
    blocks: list[Block] = [("h2", "Plots")]
    blocks += [("plot", plot) for plot in inputs.plots]
    if inputs.plot_notes:
        blocks.append(("list", list(inputs.plot_notes)))
    return blocks


def runs_section(inputs: ReportInputs) -> list[Block]:
    blocks: list[Block] = [
        ("h2", "All runs"),
        ("p", "The same table as summary.md and summary.csv: one row per run."),
        ("table", runs_table(inputs.runs)),
    ]
    resumed = [
        f"{run.record.get('run_id')} (after epoch {epoch})"
        for run in inputs.runs
        if (epoch := as_dict(run.record.get("train_info")).get("resumed_from_epoch"))
    ]
    if resumed:
        blocks.append(
            (
                "p",
                f"Resumed from an epoch checkpoint: {', '.join(resumed)}. Their train time adds "
                "the epochs before the stop to those after it; their memory peaks are those of "
                "the epochs after it (each epoch does the same work).",
            )
        )
    return blocks


from peftbench.report.classes import class_section  # noqa: E402 - it needs ReportInputs
from peftbench.report.study_orderings import study_orderings_section  # noqa: E402 - likewise

Section = Callable[[ReportInputs], list[Block]]
SECTIONS: list[Section] = [
    title_section,
    bottom_line_section,
    results_section,
    statistics_section,
    study_orderings_section,
    class_section,
    recommendations_section,
    plots_section,
    runs_section,
    configuration_section,
    search_section,
    data_section,
    environment_section,
]


def document(inputs: ReportInputs) -> list[Block]:
    """The report's content, independent of the output format."""
    return [block for section in SECTIONS for block in section(inputs)]


def scrub_blocks(blocks: Sequence[Block], out_dir: Path) -> list[Block]:
    """The blocks with every absolute path in their text made relative or shortened."""

    def clean(text: str) -> str:
        return scrub(text, out_dir)

    result: list[Block] = []
    for kind, payload in blocks:
        if isinstance(payload, str):
            payload = clean(payload)
        elif kind in ("list", "warn"):
            payload = [clean(item) for item in payload]
        elif kind == "table":
            rows = [[clean(cell) for cell in row] for row in payload.rows]
            payload = Table([clean(h) for h in payload.headers], rows, payload.marks)
        elif kind == "recs":
            payload = [replace(r, text=clean(r.text), headline=clean(r.headline)) for r in payload]
        elif kind == "code":
            payload = (clean(payload[0]), clean(payload[1]))
        result.append((kind, payload))
    return result
