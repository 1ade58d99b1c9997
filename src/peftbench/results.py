"""The run record: one JSON file per run, its documented schema, atomic reads and writes.

Layout of an experiment's output directory::

    OUTPUT_DIR/
      experiment.yaml              the resolved experiment config
      runs/<run_id>/record.json    one RunRecord per run (this module's schema)
      runs/<run_id>/predictions.json   test-set predictions of that run (Predictions)
      runs/<run_id>/model/         the saved adapter or model, when kept
      summary.md, summary.csv      the results table

Every writer goes through `write_json_atomic`, so a crash leaves either the old file or the
new one, never half of one.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypedDict

if TYPE_CHECKING:
    from peftbench.run_spec import RunSpec

# Version of the record format. Changing a record type below: bump it, add an upgrade from
# the previous version to UPGRADES, and regenerate the published schema
# (`python -m peftbench.schema`, see schema.py).
# 2 added measurements.memory.tensor_mib (tensor memory by component).
SCHEMA_VERSION = 2


def _from_version_1(record: dict[str, Any]) -> dict[str, Any]:
    """Version 1 records lack measurements.memory.tensor_mib; it stays absent (not measured)."""
    return {**record, "schema_version": 2}


# version -> function that turns a record of that version into one of the next version;
# read_record applies them in turn, so every version from the oldest key on stays readable.
UPGRADES: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {1: _from_version_1}
RECORD_FILE = "record.json"
PREDICTIONS_FILE = "predictions.json"
RUNS_DIR = "runs"
MODEL_DIR = "model"  # in a run directory: the saved adapter or model, when kept

Status = Literal["success", "failed", "canceled"]


# The parts of a run's peak tensor memory (measurements.memory.tensor_mib.<phase>.components):
# defined here, with the record, so that reading records needs no torch (peftbench.memory
# measures them).
MEMORY_COMPONENTS = (
    "frozen_weights",
    "trainable_weights",
    "gradients",
    "optimizer_state",
    "activations",
    "temporaries",
)


class EpochMetrics(TypedDict):
    epoch: int  # 1-based
    train_loss: float  # mean training loss over the epoch's steps
    train_time_s: float  # wall time of the epoch's training steps, evaluation excluded
    eval_time_s: float  # wall time of the evaluation after this epoch
    eval: dict[str, float]  # accuracy, macro_f1, precision, recall, loss on the test split


class RunError(TypedDict):
    type: str  # exception class name, or "NonFiniteLoss", "ProcessDied", "Interrupted"
    message: str
    epoch_reached: int  # epochs completed before the failure (0 = none)
    traceback: str | None


class RunRecord(TypedDict):
    schema_version: int  # SCHEMA_VERSION at the time of writing
    run_id: str  # "<label>-seed<seed>", unique in the experiment
    config_hash: str  # sha256 of the fully resolved run config; a changed config = a new run
    status: Status
    error: RunError | None  # set when status is not "success"
    run_info: dict[str, Any]
    #   label, method, seed, experiment name, started_at / finished_at (ISO 8601 UTC),
    #   and "config": the resolved run config (model, data, training, method hyperparameters);
    #   "tracking" (with tracking.report_to): where each tracker logged the run, and warnings
    data_info: dict[str, Any]
    #   num_labels, label_names, train_size, test_size, label_balance {split: {label: count}},
    #   warnings (list of str)
    train_info: dict[str, Any]
    #   epochs: list[EpochMetrics]; train_time_s, eval_time_s (totals, s); train_steps;
    #   train_tokens (real, non-padding tokens seen in training); train_tokens_per_s;
    #   eval_examples_per_s; precision (the dtype used: fp32 / bf16 / fp16);
    #   attention_dropout (the probability trained with; null if the model has none)
    metrics: dict[str, float]
    #   final test-set metrics after the last epoch: accuracy, macro_f1, precision, recall,
    #   loss (fractions in [0, 1], loss in nats)
    class_metrics: dict[str, Any]  # optional (OPTIONAL_KEYS): older records lack it.
    #   label_names (original label values by class id); per_class {name: {precision, recall,
    #   f1, support}} on the test set after the last epoch; confusion_matrix (rows: gold,
    #   columns: predicted, label_names order)
    measurements: dict[str, Any]
    #   trainable_params, total_params, trainable_percent (% of total);
    #   memory: {device, peak_rss_mb (the whole process, runtime included),
    #            cuda_peak_allocated_mb, cuda_peak_reserved_mb, nvml_peak_used_mb,
    #            tensor_mib: {unit: "MiB", tracked, train: {<component>: MiB, total_mib},
    #                         eval: {...}, peak_mib}}  (MB here = MiB = 2**20 bytes; None where
    #            not measurable). tensor_mib is the headline figure: live tensor bytes at the
    #            peak, by component (MEMORY_COMPONENTS); absent in version 1 records.
    #   serving: {examples, unmerged: {latency_s_per_example_batch1, throughput_examples_per_s,
    #            tensor_peak_mib, weights_mib}, merged: same or None, not_merged_because,
    #            merged_predictions_agree, merged_predictions_differ (how many of `examples`),
    #            merged_max_logit_difference} (peftbench.serving;
    #            schema 2);
    #   model_size_mb: size on disk of what the method saves (adapter + trained head for
    #   PEFT methods, the whole model for full fine-tuning)
    meta_info: dict[str, Any]
    #   packages {name: version}, python, platform, device_name, cpu, gpu, torch_threads,
    #   git_commit (of the peftbench checkout, or None)


# RunRecord keys that records written by earlier versions of this schema may lack.
OPTIONAL_KEYS = frozenset({"class_metrics"})


class Predictions(TypedDict):
    run_id: str
    example_ids: list[int]  # index of each example in the test subset
    labels: list[int]  # gold label ids
    predictions: list[int]  # predicted label ids, same order
    label_names: list[str]  # the original label value of each id (data_info.label_mapping)
    gold_values: list[str]  # gold labels as the data holds them, same order
    predicted_values: list[str]  # predictions as label values, same order


def finite_number(value: Any) -> float | int | None:
    """`value` if it is a finite int or float, else None (bools, strings, NaN, inf): records
    and the files beside them are read, not trusted."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return value if math.isfinite(value) else None


def now_iso() -> str:
    """The current UTC time, as the record writes it (ISO 8601, seconds)."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def _zero_totals() -> dict[str, float]:
    return {"train_time_s": 0.0, "eval_time_s": 0.0, "train_tokens": 0, "train_steps": 0}


@dataclass
class RunProgress:
    """How far a run has got: filled in as it goes, so that a failure record can say it."""

    started_at: str | None = None  # ISO 8601 UTC
    data_info: dict[str, Any] = field(default_factory=dict)
    epochs: list[EpochMetrics] = field(default_factory=list)
    # Sums over the epochs done: train_time_s, eval_time_s, train_tokens, train_steps.
    totals: dict[str, float] = field(default_factory=_zero_totals)
    resumed_from_epoch: int | None = None  # epochs restored from a checkpoint, if any


def run_info(spec: RunSpec, progress: RunProgress) -> dict[str, Any]:
    """The record's run_info: which run this is, when it ran, its resolved config."""
    return {
        "label": spec.label,
        "method": spec.method,
        "seed": spec.seed,
        "experiment": spec.experiment,
        "role": spec.role,
        "search": spec.search,
        "started_at": progress.started_at,
        "finished_at": now_iso(),
        "config": spec.resolved_config(),
    }


def train_summary(
    progress: RunProgress,
    test_size: int,
    precision: str,
    attention_dropout: float | None,
    flops: dict[str, Any],
) -> dict[str, Any]:
    """The record's train_info of a finished run: its epochs, totals and rates."""
    totals = progress.totals
    train_time, eval_time = totals["train_time_s"], totals["eval_time_s"]
    return {
        "epochs": progress.epochs,
        "train_time_s": train_time,
        "eval_time_s": eval_time,
        "train_steps": totals["train_steps"],
        "train_tokens": totals["train_tokens"],
        "train_tokens_per_s": totals["train_tokens"] / train_time if train_time else None,
        "resumed_from_epoch": progress.resumed_from_epoch,
        # Every epoch evaluates the whole test split.
        "eval_examples_per_s": len(progress.epochs) * test_size / eval_time if eval_time else None,
        "precision": precision,
        "attention_dropout": attention_dropout,
        "flops": flops,
    }


def success_record(
    spec: RunSpec,
    progress: RunProgress,
    train_info: dict[str, Any],
    measurements: dict[str, Any],
    meta_info: dict[str, Any],
) -> RunRecord:
    """The record of a run that finished: its metrics are those after the last epoch."""
    return {
        "schema_version": SCHEMA_VERSION,
        "run_id": spec.run_id,
        "config_hash": spec.config_hash,
        "status": "success",
        "error": None,
        "run_info": run_info(spec, progress),
        "data_info": progress.data_info,
        "train_info": train_info,
        "metrics": dict(progress.epochs[-1]["eval"]),
        "measurements": measurements,
        "meta_info": meta_info,
    }


def failure_record(
    spec: RunSpec,
    status: Status,
    error_type: str,
    message: str,
    progress: RunProgress,
    trace: str | None = None,
) -> RunRecord:
    """The record of a run that did not finish: what it reached, and why it stopped."""
    epochs = progress.epochs
    return {
        "schema_version": SCHEMA_VERSION,
        "run_id": spec.run_id,
        "config_hash": spec.config_hash,
        "status": status,
        "error": {
            "type": error_type,
            "message": message,
            "epoch_reached": len(epochs),
            "traceback": trace,
        },
        "run_info": run_info(spec, progress),
        "data_info": progress.data_info,
        "train_info": {"epochs": epochs},
        "metrics": dict(epochs[-1]["eval"]) if epochs else {},
        "measurements": {},
        "meta_info": {},
    }


def predictions_record(
    run_id: str, example_ids: list[int], labels: list[int], predictions: list[int]
) -> Predictions:
    return {
        "run_id": run_id,
        "example_ids": example_ids,
        "labels": labels,
        "predictions": predictions,
    }


class RecordError(Exception):
    """A record file that cannot be used: unreadable, corrupt, or of another schema version."""


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON to `path` via a temporary file and a rename, so readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2, sort_keys=False, allow_nan=True)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def read_record(path: Path) -> RunRecord:
    """Read and check one record; raise RecordError saying what is wrong with it."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise RecordError(f"{path}: no such record") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RecordError(f"{path}: not valid JSON (truncated or corrupt): {exc}") from exc
    if not isinstance(data, dict):
        raise RecordError(f"{path}: not a run record (top level is not an object)")
    version = data.get("schema_version")
    oldest = min(UPGRADES, default=SCHEMA_VERSION)
    if not isinstance(version, int) or not oldest <= version <= SCHEMA_VERSION:
        raise RecordError(
            f"{path}: schema version {version!r}, this peftbench reads versions {oldest} to "
            f"{SCHEMA_VERSION}"
        )
    for older in range(version, SCHEMA_VERSION):
        data = UPGRADES[older](data)
    missing = [k for k in RunRecord.__annotations__ if k not in data and k not in OPTIONAL_KEYS]
    if missing:
        raise RecordError(f"{path}: missing fields {', '.join(missing)}")
    return data  # type: ignore[return-value]


def record_file(run_dir: Path | str) -> Path:
    """The record of the run whose directory is `run_dir`."""
    return Path(run_dir) / RECORD_FILE


def predictions_file(run_dir: Path | str) -> Path:
    """The test-set predictions of the run whose directory is `run_dir`."""
    return Path(run_dir) / PREDICTIONS_FILE


def record_path(output_dir: Path, run_id: str) -> Path:
    return record_file(Path(output_dir) / RUNS_DIR / run_id)


def predictions_path(output_dir: Path, run_id: str) -> Path:
    return predictions_file(Path(output_dir) / RUNS_DIR / run_id)


def load_records(output_dir: Path) -> tuple[list[RunRecord], list[str]]:
    """All valid records under an output directory, and a message for each one skipped."""
    records: list[RunRecord] = []
    skipped: list[str] = []
    runs_dir = Path(output_dir) / RUNS_DIR
    for path in sorted(runs_dir.glob(f"*/{RECORD_FILE}")):
        try:
            records.append(read_record(path))
        except RecordError as exc:
            skipped.append(str(exc))
    return records, skipped
