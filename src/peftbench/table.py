"""The results table: which columns a user reads, their units, and which direction is better.

`COLUMNS` is the one place that says how each figure is read from a run record, how it is
labelled and whether higher is better; the summary table, the report, the Pareto front and
the rankings all use it.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from peftbench.results import RunRecord


@dataclass(frozen=True)
class Column:
    key: str  # machine name, used in CSV headers
    label: str  # what a reader sees, with the unit
    get: Callable[[RunRecord], Any]  # value from a record (None where not measured)
    fmt: Callable[[Any], str]  # how to print it
    higher_is_better: bool | None = None  # None: not a figure of merit (a name, a count)


def _dig(*keys: str) -> Callable[[RunRecord], Any]:
    def get(record: RunRecord) -> Any:
        value: Any = record
        for key in keys:
            if not isinstance(value, dict) or value.get(key) is None:
                return None
            value = value[key]
        return value

    return get


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.2f}"


def _count(value: int | None) -> str:
    return "—" if value is None else f"{value:,}"


def _fixed(digits: int) -> Callable[[Any], str]:
    return lambda value: "—" if value is None else f"{value:,.{digits}f}"


def _text(value: Any) -> str:
    return "—" if value is None else str(value)


COLUMNS: list[Column] = [
    Column("run_id", "run", _dig("run_id"), _text),
    Column("method", "method", _dig("run_info", "method"), _text),
    Column("seed", "seed", _dig("run_info", "seed"), _text),
    Column("status", "status", _dig("status"), _text),
    Column("accuracy", "accuracy (%)", _dig("metrics", "accuracy"), _percent, True),
    Column("macro_f1", "macro-F1 (%)", _dig("metrics", "macro_f1"), _percent, True),
    Column(
        "trainable_params",
        "trainable params",
        _dig("measurements", "trainable_params"),
        _count,
        False,
    ),
    Column(
        "trainable_percent",
        "trainable (% of total)",
        _dig("measurements", "trainable_percent"),
        _fixed(3),
        False,
    ),
    Column("train_time_s", "train time (s)", _dig("train_info", "train_time_s"), _fixed(1), False),
    Column("eval_time_s", "eval time (s)", _dig("train_info", "eval_time_s"), _fixed(1), False),
    Column(
        "train_tokens_per_s",
        "train throughput (tokens/s)",
        _dig("train_info", "train_tokens_per_s"),
        _fixed(0),
        True,
    ),
    Column(
        "peak_rss_mb",
        "peak process RSS (MB)",
        _dig("measurements", "memory", "peak_rss_mb"),
        _fixed(0),
        False,
    ),
    Column(
        "cuda_peak_allocated_mb",
        "peak CUDA allocated (MB)",
        _dig("measurements", "memory", "cuda_peak_allocated_mb"),
        _fixed(0),
        False,
    ),
    Column(
        "cuda_peak_reserved_mb",
        "peak CUDA reserved (MB)",
        _dig("measurements", "memory", "cuda_peak_reserved_mb"),
        _fixed(0),
        False,
    ),
    Column(
        "nvml_peak_used_mb",
        "peak GPU used, NVML (MB)",
        _dig("measurements", "memory", "nvml_peak_used_mb"),
        _fixed(0),
        False,
    ),
    Column(
        "model_size_mb",
        "adapter/model size on disk (MB)",
        _dig("measurements", "model_size_mb"),
        _fixed(2),
        False,
    ),
]

COLUMNS_BY_KEY = {column.key: column for column in COLUMNS}


def visible_columns(records: list[RunRecord]) -> list[Column]:
    """The columns that hold a value for at least one record (CUDA columns vanish on CPU)."""
    return [c for c in COLUMNS if any(c.get(r) is not None for r in records)]


def render_markdown(records: list[RunRecord]) -> str:
    """A Markdown table with one row per run."""
    columns = visible_columns(records)
    lines = [
        "| " + " | ".join(c.label for c in columns) + " |",
        "| " + " | ".join("---" for _ in columns) + " |",
    ]
    for record in records:
        lines.append("| " + " | ".join(c.fmt(c.get(record)) for c in columns) + " |")
    return "\n".join(lines) + "\n"


def render_csv(records: list[RunRecord]) -> str:
    """CSV with one row per run, raw values (fractions, not percentages), headers = keys."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([c.key for c in COLUMNS])
    for record in records:
        writer.writerow(["" if c.get(record) is None else c.get(record) for c in COLUMNS])
    return buffer.getvalue()
