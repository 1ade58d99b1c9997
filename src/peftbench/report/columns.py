"""The figures a user reads: how each is read from a record, its unit, which way is better.

`COLUMNS` is the one place that says how each figure is read from a run record, how it is
labelled and whether higher is better; the summary table (summary.md / summary.csv), the
report, the Pareto front and the rankings all use it. A new figure is one entry here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from peftbench.results import RunRecord, finite_number


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


def _sci(value: float | None) -> str:
    return "—" if value is None else f"{value:.3g}".replace("e+", "e")


def _eval_time_per_evaluation(record: RunRecord) -> float | None:
    """Mean wall time of one evaluation: the record's total over its evaluations (epochs)."""
    total = finite_number(_dig("train_info", "eval_time_s")(record))
    epochs = _dig("train_info", "epochs")(record)
    count = len(epochs) if isinstance(epochs, list) else 0
    if total is None or not count:
        return None
    return total / count


def _serving(variant: str, key: str, scale: float = 1.0) -> Callable[[RunRecord], Any]:
    """A serving figure (measurements.serving.<variant>.<key>), times `scale`."""
    get = _dig("measurements", "serving", variant, key)

    def scaled(record: RunRecord) -> Any:
        value = get(record)
        return value * scale if isinstance(value, int | float) else None

    return scaled


def _merge_status(record: RunRecord) -> str | None:
    """Whether the adapter was merged for serving, and if so whether it predicts the same:
    'same predictions', 'N of M predictions differ (max logit difference D)' (in bf16,
    rounding can flip an example near a tie), or 'no: <why, in short>'."""
    serving = _dig("measurements", "serving")(record)
    if not isinstance(serving, dict):
        return None
    if serving.get("merged") is None:
        why = str(serving.get("not_merged_because") or "not measured")
        return f"no: {why.split(':')[0]}"
    if serving.get("merged_predictions_agree"):
        return "same predictions"
    differ = serving.get("merged_predictions_differ")
    examples = serving.get("examples")
    count = "predictions" if differ is None else f"{differ} of {examples} predictions"
    difference = serving.get("merged_max_logit_difference")
    largest = "" if difference is None else f" (max logit difference {difference:.2g})"
    return f"{count} differ{largest}"


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
    Column("precision", "precision", _dig("train_info", "precision"), _text),
    Column("train_time_s", "train time (s)", _dig("train_info", "train_time_s"), _fixed(1), False),
    Column(
        "eval_time_per_eval_s",
        "eval time per evaluation (s)",
        _eval_time_per_evaluation,
        _fixed(1),
        False,
    ),
    Column(
        "train_tokens_per_s",
        "train throughput (tokens/s)",
        _dig("train_info", "train_tokens_per_s"),
        _fixed(0),
        True,
    ),
    Column(
        "eval_examples_per_s",
        "eval throughput (examples/s)",
        _dig("train_info", "eval_examples_per_s"),
        _fixed(1),
        True,
    ),
    Column("train_flops", "train FLOPs", _dig("train_info", "flops", "train_flops"), _sci, False),
    Column("mfu", "MFU (%)", _dig("train_info", "flops", "mfu"), _percent, True),
    Column(
        "tensor_peak_mib",
        "peak tensor memory (MiB)",
        _dig("measurements", "memory", "tensor_mib", "peak_mib"),
        _fixed(0),
        False,
    ),
    Column(
        "peak_rss_mb",
        "peak process RSS (MiB)",
        _dig("measurements", "memory", "peak_rss_mb"),
        _fixed(0),
        False,
    ),
    Column(
        "cuda_peak_allocated_mb",
        "peak CUDA allocated (MiB)",
        _dig("measurements", "memory", "cuda_peak_allocated_mb"),
        _fixed(0),
        False,
    ),
    Column(
        "cuda_peak_reserved_mb",
        "peak CUDA reserved (MiB)",
        _dig("measurements", "memory", "cuda_peak_reserved_mb"),
        _fixed(0),
        False,
    ),
    Column(
        "nvml_peak_used_mb",
        "peak GPU used, NVML (MiB)",
        _dig("measurements", "memory", "nvml_peak_used_mb"),
        _fixed(0),
        False,
    ),
    *[
        column
        for variant in ("unmerged", "merged")
        for column in (
            Column(
                f"serving_latency_ms_{variant}",
                f"serving latency, batch 1, {variant} (ms/example)",
                _serving(variant, "latency_s_per_example_batch1", 1000.0),
                _fixed(1),
                False,
            ),
            Column(
                f"serving_throughput_{variant}",
                f"serving throughput, {variant} (examples/s)",
                _serving(variant, "throughput_examples_per_s"),
                _fixed(1),
                True,
            ),
            Column(
                f"serving_memory_mib_{variant}",
                f"serving tensor memory, {variant} (MiB)",
                _serving(variant, "tensor_peak_mib"),
                _fixed(0),
                False,
            ),
        )
    ],
    Column("merge", "merged", _merge_status, _text),
    Column(
        "model_size_mb",
        "adapter/model size on disk (MiB)",
        _dig("measurements", "model_size_mb"),
        _fixed(2),
        False,
    ),
]

PUBLISHED_MEMORY_KEY = "published_gpu_memory_mb"  # in MethodStats.mean of reference rows only
COLUMNS_BY_KEY = {column.key: column for column in COLUMNS}


def visible_columns(records: list[RunRecord]) -> list[Column]:
    """The columns that hold a value for at least one record (CUDA columns vanish on CPU)."""
    return [c for c in COLUMNS if any(c.get(r) is not None for r in records)]
