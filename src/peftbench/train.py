"""One run: base model + method + prepared data -> trained model, metrics per epoch, a record.

Read top to bottom: `execute_run` sets up, trains epoch by epoch (evaluating after each), saves
the adapter or model, and returns the run record. `run_worker` is what the runner starts in a
fresh process per run; it turns any failure into a record instead of losing the run.
"""

from __future__ import annotations

import math
import random
import shutil
import signal
import time
import traceback
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.metrics import accuracy_score, precision_recall_fscore_support
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from peftbench.checkpoints import load_checkpoint, remove_checkpoint, restore, save_checkpoint
from peftbench.config import ModelConfig, TrainingConfig, to_plain
from peftbench.data import PreparedData, TokenizedSplit, batch_order, collate, load_prepared
from peftbench.flops import flops_summary, model_shape, peak_flops
from peftbench.measure import (
    NvmlPeak,
    cpu_has_native_bf16,
    directory_size_mb,
    environment,
    memory_summary,
)
from peftbench.methods import Method, MethodContext, get_method
from peftbench.models import (
    attention_dropout_of,
    count_parameters,
    load_model,
    save_trained_model,
)
from peftbench.results import (
    SCHEMA_VERSION,
    EpochMetrics,
    Predictions,
    RunRecord,
    write_json_atomic,
)

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class RunSpec:
    """Everything a worker process needs to do one run (picklable)."""

    run_id: str
    label: str
    method: str
    params: Any  # the method's params dataclass
    seed: int
    experiment: str
    config_hash: str
    model: ModelConfig
    training: TrainingConfig
    data_cache: str  # file written by data.prepare_data
    run_dir: str
    # "final" runs are the results; "search" runs train on the training subset less a
    # validation split and are scored on that split, to choose hyperparameters.
    role: str = "final"
    search: dict[str, Any] | None = None  # for a final run: the search that chose its params

    def resolved_config(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "method_params": to_plain(self.params),
            "seed": self.seed,
            "model": to_plain(self.model),
            "training": to_plain(self.training),
        }


class NonFiniteLoss(RuntimeError):
    """The training loss became NaN or infinite."""


def quiet_libraries() -> None:
    """Keep the libraries' load reports and deprecation notes out of the progress output."""
    import warnings

    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module="peft")


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def pick_device(choice: str) -> torch.device:
    if choice == "cuda" or (choice == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


def pick_precision(choice: str, device: torch.device) -> str:
    """The dtype to compute in: "auto" takes bf16 only where the hardware runs it natively."""
    if choice != "auto":
        return choice
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if cpu_has_native_bf16() else "fp32"


def classification_metrics(labels: list[int], predictions: list[int]) -> dict[str, float]:
    precision, recall, f1, _ = precision_recall_fscore_support(
        labels, predictions, average="macro", zero_division=0
    )
    return {
        "accuracy": float(accuracy_score(labels, predictions)),
        "macro_f1": float(f1),
        "precision": float(precision),
        "recall": float(recall),
    }


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _autocast(device: torch.device, precision: str) -> Any:
    return torch.autocast(
        device_type=device.type, dtype=DTYPES[precision], enabled=precision != "fp32"
    )


def evaluate(
    model: torch.nn.Module,
    split: TokenizedSplit,
    data: PreparedData,
    training: TrainingConfig,
    device: torch.device,
    precision: str,
) -> tuple[dict[str, float], list[int]]:
    """Metrics on a split and the prediction for each example, in the split's order."""
    model.eval()
    predictions = [0] * len(split)
    total_loss = 0.0
    pad_to = training.max_length if training.padding == "max_length" else None
    lengths = [len(ids) for ids in split.input_ids]
    # Sorted by length (no shuffle) so that each batch pads as little as possible.
    order = batch_order(lengths, training.eval_batch_size, None, training.sort_eval_by_length)
    with torch.no_grad(), tqdm(total=len(split), desc="  evaluating", unit="ex") as bar:
        for indices in order:
            batch = _to(collate(split, indices, data.pad_token_id, pad_to), device)
            with _autocast(device, precision):
                output = model(**batch)
            total_loss += output.loss.float().item() * len(indices)
            for index, predicted in zip(indices, output.logits.argmax(-1).tolist(), strict=True):
                predictions[index] = predicted
            bar.update(len(indices))
    metrics = classification_metrics(split.labels, predictions)
    metrics["loss"] = total_loss / len(split)
    return metrics, predictions


def _to(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {key: value.to(device, non_blocking=True) for key, value in batch.items()}


def micro_batches(indices: list[int], accumulation_steps: int) -> list[list[int]]:
    """Split one optimiser step's examples into `accumulation_steps` near-equal parts."""
    size = math.ceil(len(indices) / accumulation_steps)
    return [indices[i : i + size] for i in range(0, len(indices), size)]


def train_epoch(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: torch.amp.GradScaler,
    data: PreparedData,
    training: TrainingConfig,
    device: torch.device,
    precision: str,
    seed: int,
    epoch: int,
    method: Method | None = None,
    steps_done: int = 0,
) -> tuple[float, int, int]:
    """One pass over the training split: (mean loss, steps, real tokens processed).

    `method.after_step` (if any) is called after each optimiser step with the run's step count,
    which starts from `steps_done`."""
    model.train()
    pad_to = training.max_length if training.padding == "max_length" else None
    trainable = [p for p in model.parameters() if p.requires_grad]
    lengths = [len(ids) for ids in data.train.input_ids]
    losses: list[float] = []
    tokens = 0
    # A different, seeded order each epoch: repeatable, and the same for every method.
    order = batch_order(
        lengths, training.train_batch_size, seed * 1000 + epoch, training.group_by_length
    )
    with tqdm(total=len(order), desc=f"  epoch {epoch} training", unit="step") as bar:
        for indices in order:
            step_loss = 0.0
            for part in micro_batches(indices, training.gradient_accumulation_steps):
                batch = collate(data.train, part, data.pad_token_id, pad_to)
                tokens += int(batch["attention_mask"].sum())
                with _autocast(device, precision):
                    loss = model(**_to(batch, device)).loss
                if not torch.isfinite(loss):
                    raise NonFiniteLoss(
                        f"training loss became {loss.item()} at epoch {epoch}, step "
                        f"{len(losses) + 1} (try a lower learning rate, or precision: fp32)"
                    )
                # Weighted so that the step's gradient is that of the whole batch's mean loss.
                share = len(part) / len(indices)
                scaler.scale(loss * share).backward()
                step_loss += loss.item() * share
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(trainable, training.max_grad_norm)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            if method is not None and method.after_step is not None:
                method.after_step(model, steps_done + len(losses) + 1)
            optimizer.zero_grad(set_to_none=True)
            losses.append(step_loss)
            bar.set_postfix(loss=f"{step_loss:.4f}")
            bar.update(1)
    return sum(losses) / len(losses), len(losses), tokens


def save_trained(model: torch.nn.Module, directory: Path, model_config: ModelConfig) -> float:
    """Save what the method trained (adapter + head, trained tensors, or the whole model); MB."""
    if directory.exists():
        shutil.rmtree(directory)
    save_trained_model(model, directory, base_reloadable=model_config.init == "pretrained")
    return directory_size_mb(directory)


def execute_run(spec: RunSpec, progress: dict[str, Any]) -> RunRecord:
    """Do one run and return its record. `progress` is filled as it goes, for failure records."""
    training = spec.training
    if training.num_threads:
        torch.set_num_threads(training.num_threads)
    device = pick_device(training.device)
    precision = pick_precision(training.precision, device)
    # Measured once per machine and cached; done before the model loads and before NVML
    # sampling starts, so the micro-benchmark stays out of the run's peak memory, and before
    # seeding, so that a run's random stream never depends on whether the peak was cached.
    peak = peak_flops(device, DTYPES[precision])
    set_seed(spec.seed)
    data = load_prepared(Path(spec.data_cache))
    progress["data_info"] = data.info
    method = get_method(spec.method)
    nvml = NvmlPeak(device.index or 0) if device.type == "cuda" else None

    quantize = spec.params if method.uses_4bit_base(spec.params) else None
    compute = getattr(spec.params, "compute_dtype", "auto")
    compute_dtype = DTYPES["bf16" if device.type == "cuda" else "fp32"]
    if compute != "auto":
        compute_dtype = DTYPES[compute]
    total_steps = training.epochs * math.ceil(len(data.train) / training.train_batch_size)
    model = load_model(
        spec.model,
        data.num_labels,
        device,
        quantize,
        compute_dtype,
        training.attention,
        training.attention_dropout,
    )
    attention_dropout = attention_dropout_of(model.config)
    if training.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model = method.apply(model, spec.params, MethodContext(total_steps=total_steps))
    flop_shape = model_shape(model)
    # Compiled or not, `model` is what gets saved; `forward_model` is what runs.
    forward_model = torch.compile(model, dynamic=True) if training.compile else model
    trainable_params, total_params = count_parameters(model)

    optimizer = torch.optim.AdamW(
        method.optimizer_groups(model, spec.params),
        lr=spec.params.learning_rate,
        weight_decay=training.weight_decay,
        fused=device.type == "cuda",
    )
    scheduler = get_linear_schedule_with_warmup(
        optimizer, int(training.warmup_ratio * total_steps), total_steps
    )
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")

    run_dir = Path(spec.run_dir)
    totals = {"train_time_s": 0.0, "eval_time_s": 0.0, "train_tokens": 0, "train_steps": 0}
    predictions: list[int] = []
    checkpoint = load_checkpoint(run_dir, spec.config_hash)
    if checkpoint is not None:
        restored = restore(checkpoint, model, optimizer, scheduler, scaler)
        progress["epochs"], totals = restored["epochs"], restored["totals"]
        predictions = restored["predictions"]
        progress["resumed_from_epoch"] = len(progress["epochs"])
        print(f"  resuming after epoch {len(progress['epochs'])} from its checkpoint", flush=True)
    epochs: list[EpochMetrics] = progress.setdefault("epochs", [])
    for epoch in range(len(epochs) + 1, training.epochs + 1):
        _sync(device)
        start = time.perf_counter()
        loss, steps, tokens = train_epoch(
            forward_model,
            optimizer,
            scheduler,
            scaler,
            data,
            training,
            device,
            precision,
            spec.seed,
            epoch,
            method,
            totals["train_steps"],
        )
        _sync(device)
        epoch_train = time.perf_counter() - start
        start = time.perf_counter()
        metrics, predictions = evaluate(forward_model, data.test, data, training, device, precision)
        _sync(device)
        epoch_eval = time.perf_counter() - start
        totals["train_time_s"] += epoch_train
        totals["eval_time_s"] += epoch_eval
        totals["train_tokens"] += tokens
        totals["train_steps"] += steps
        epochs.append(
            {
                "epoch": epoch,
                "train_loss": loss,
                "train_time_s": epoch_train,
                "eval_time_s": epoch_eval,
                "eval": metrics,
            }
        )
        save_checkpoint(
            run_dir,
            spec.config_hash,
            model,
            optimizer,
            scheduler,
            scaler,
            {"epochs": epochs, "totals": totals, "predictions": predictions},
        )
        print(
            f"  epoch {epoch}: train loss {loss:.4f}, "
            f"{'validation' if spec.role == 'search' else 'test'} accuracy "
            f"{100 * metrics['accuracy']:.2f}%, train {epoch_train:.1f} s, eval {epoch_eval:.1f} s",
            flush=True,
        )

    memory = memory_summary(device, nvml)
    model_dir = run_dir / "model"
    model_size_mb = save_trained(model, model_dir, spec.model)
    if not training.keep_model:
        shutil.rmtree(model_dir)
    prediction_record: Predictions = {
        "run_id": spec.run_id,
        "example_ids": data.test.example_ids,
        "labels": data.test.labels,
        "predictions": predictions,
    }
    write_json_atomic(run_dir / "predictions.json", prediction_record)

    final = epochs[-1]["eval"]
    train_time, eval_time = totals["train_time_s"], totals["eval_time_s"]
    record: RunRecord = {
        "schema_version": SCHEMA_VERSION,
        "run_id": spec.run_id,
        "config_hash": spec.config_hash,
        "status": "success",
        "error": None,
        "run_info": _run_info(spec, progress),
        "data_info": data.info,
        "train_info": {
            "epochs": epochs,
            "train_time_s": train_time,
            "eval_time_s": eval_time,
            "train_steps": totals["train_steps"],
            "train_tokens": totals["train_tokens"],
            "train_tokens_per_s": totals["train_tokens"] / train_time if train_time else None,
            "resumed_from_epoch": progress.get("resumed_from_epoch"),
            "eval_examples_per_s": training.epochs * len(data.test) / eval_time
            if eval_time
            else None,
            "precision": precision,
            "attention_dropout": attention_dropout,
            "flops": flops_summary(
                flop_shape,
                [len(ids) for ids in data.train.input_ids],
                len(epochs),
                [len(ids) for ids in data.test.input_ids],
                train_time,
                peak,
                eval_time,
            ),
        },
        "metrics": dict(final),
        "measurements": {
            "trainable_params": trainable_params,
            "total_params": total_params,
            "trainable_percent": 100 * trainable_params / total_params,
            "memory": memory,
            "model_size_mb": model_size_mb,
        },
        "meta_info": environment(device),
    }
    return record


def _run_info(spec: RunSpec, progress: dict[str, Any]) -> dict[str, Any]:
    return {
        "label": spec.label,
        "method": spec.method,
        "seed": spec.seed,
        "experiment": spec.experiment,
        "role": spec.role,
        "search": spec.search,
        "started_at": progress.get("started_at"),
        "finished_at": now_iso(),
        "config": spec.resolved_config(),
    }


def failure_record(
    spec: RunSpec,
    status: str,
    error_type: str,
    message: str,
    progress: dict[str, Any],
    trace: str | None = None,
) -> RunRecord:
    """The record of a run that did not finish: what it reached, and why it stopped."""
    epochs = progress.get("epochs", [])
    return {
        "schema_version": SCHEMA_VERSION,
        "run_id": spec.run_id,
        "config_hash": spec.config_hash,
        "status": status,  # type: ignore[typeddict-item]
        "error": {
            "type": error_type,
            "message": message,
            "epoch_reached": len(epochs),
            "traceback": trace,
        },
        "run_info": _run_info(spec, progress),
        "data_info": progress.get("data_info", {}),
        "train_info": {"epochs": epochs},
        "metrics": dict(epochs[-1]["eval"]) if epochs else {},
        "measurements": {},
        "meta_info": {},
    }


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def run_worker(spec: RunSpec) -> None:
    """Entry point of a run's own process: always leaves a record behind, whatever happens."""
    # SIGTERM (a job scheduler, `kill`, the runner stopping us) ends the run like Ctrl-C.
    signal.signal(signal.SIGTERM, _raise_interrupt)
    quiet_libraries()
    record_file = Path(spec.run_dir) / "record.json"
    progress: dict[str, Any] = {"started_at": now_iso()}
    try:
        record = execute_run(spec, progress)
    except KeyboardInterrupt:
        # A second signal (the runner passing SIGTERM on after Ctrl-C) must not cut the write.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        record = failure_record(
            spec,
            "canceled",
            "Interrupted",
            "interrupted (Ctrl-C or SIGTERM); run again to resume from the last epoch",
            progress,
        )
        write_json_atomic(record_file, record)
        raise SystemExit(130) from None
    except Exception as exc:  # noqa: BLE001 - every failure becomes this run's record
        record = failure_record(
            spec, "failed", type(exc).__name__, str(exc), progress, traceback.format_exc()
        )
        write_json_atomic(record_file, record)
        raise SystemExit(1) from None
    write_json_atomic(record_file, record)
    remove_checkpoint(Path(spec.run_dir))
