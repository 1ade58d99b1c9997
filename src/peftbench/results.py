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
import os
import tempfile
from pathlib import Path
from typing import Any, Literal, TypedDict

SCHEMA_VERSION = 1
RECORD_FILE = "record.json"
PREDICTIONS_FILE = "predictions.json"
RUNS_DIR = "runs"

Status = Literal["success", "failed", "canceled"]


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
    #   and "config": the resolved run config (model, data, training, method hyperparameters)
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
    measurements: dict[str, Any]
    #   trainable_params, total_params, trainable_percent (% of total);
    #   memory: {device, peak_rss_mb, cuda_peak_allocated_mb, cuda_peak_reserved_mb,
    #            nvml_peak_used_mb}  (MB = 2**20 bytes; None where not measurable);
    #   model_size_mb: size on disk of what the method saves (adapter + trained head for
    #   PEFT methods, the whole model for full fine-tuning)
    meta_info: dict[str, Any]
    #   packages {name: version}, python, platform, device_name, cpu, gpu, torch_threads,
    #   git_commit (of the peftbench checkout, or None)


class Predictions(TypedDict):
    run_id: str
    example_ids: list[int]  # index of each example in the test subset
    labels: list[int]  # gold label ids
    predictions: list[int]  # predicted label ids, same order


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
    if version != SCHEMA_VERSION:
        raise RecordError(
            f"{path}: schema version {version!r}, this peftbench reads version {SCHEMA_VERSION}"
        )
    missing = [key for key in RunRecord.__annotations__ if key not in data]
    if missing:
        raise RecordError(f"{path}: missing fields {', '.join(missing)}")
    return data  # type: ignore[return-value]


def record_path(output_dir: Path, run_id: str) -> Path:
    return Path(output_dir) / RUNS_DIR / run_id / RECORD_FILE


def predictions_path(output_dir: Path, run_id: str) -> Path:
    return Path(output_dir) / RUNS_DIR / run_id / PREDICTIONS_FILE


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
