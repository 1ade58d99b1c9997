"""One run as a linear recipe: setup(spec) -> RunState, train(state), finish(state) -> record.

Read top to bottom: `setup` picks the device and precision, loads the prepared data, builds the
base model with the method applied, the optimiser, scheduler and loss scaler, and resumes from
the last epoch's checkpoint if there is one; `train` does the remaining epochs, each followed by
an evaluation and a checkpoint; `finish` measures, saves what the method trained, writes the
predictions and returns the run record. The loops themselves are in peftbench.loop.
`run_worker` is what the runner starts in a fresh process per run; it turns any failure into a
record instead of losing the run.
"""

from __future__ import annotations

import math
import random
import shutil
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from transformers import get_linear_schedule_with_warmup

from peftbench import distributed, tracking
from peftbench.checkpoints import load_checkpoint, remove_checkpoint, restore, save_checkpoint
from peftbench.class_metrics import class_metrics
from peftbench.config import ModelConfig
from peftbench.data import load_prepared, original_label_values
from peftbench.flops import flops_summary, forget_peak_flops, model_shape, peak_flops
from peftbench.interrupts import InterruptGuard, sigterm_as_interrupt
from peftbench.logs import LOG
from peftbench.logs import configure as configure_logging
from peftbench.loop import DTYPES, RunState, _autocast, evaluate, synchronize, train_epoch
from peftbench.measure import (
    NvmlPeak,
    cpu_has_native_bf16,
    directory_size_mb,
    environment,
    memory_summary,
)
from peftbench.memory import tensor_memory_tracker
from peftbench.methods import Method, MethodContext, get_method
from peftbench.models import (
    attention_dropout_of,
    count_parameters,
    load_model,
    save_trained_model,
)
from peftbench.results import (
    MODEL_DIR,
    EpochMetrics,
    RunProgress,
    RunRecord,
    failure_record,
    now_iso,
    predictions_file,
    predictions_record,
    record_file,
    success_record,
    train_summary,
    write_json_atomic,
)
from peftbench.run_spec import RunSpec
from peftbench.serving import serving_cost


def quiet_libraries() -> None:
    """Keep the libraries' load reports and deprecation notes out of the progress output."""
    import warnings

    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module="peft")


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


# --- setup -------------------------------------------------------------------------------


def setup(spec: RunSpec, progress: RunProgress | None = None) -> RunState:
    """Everything the run needs, built in order, and resumed from its last checkpoint if any.

    `progress` (kept by the caller) is filled as the run goes, for a failure record."""
    progress = progress if progress is not None else RunProgress()
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
    progress.data_info = data.info
    method = get_method(spec.method)
    nvml = NvmlPeak(device.index or 0) if device.type == "cuda" else None
    total_steps = training.epochs * math.ceil(len(data.train) / training.train_batch_size)
    model, attention_dropout = _build_model(spec, method, data.num_labels, device, total_steps)
    optimizer, scheduler, scaler = _optimisation(
        spec, method, model, device, precision, total_steps
    )
    state = RunState(
        spec=spec,
        device=device,
        precision=precision,
        data=data,
        method=method,
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        scaler=scaler,
        progress=progress,
        # Compiled or not, `model` is what gets saved; `forward_model` is what runs.
        forward_model=distributed.wrap(  # DDP when the run has several workers
            torch.compile(model, dynamic=True) if training.compile else model
        ),
        peak_flops=peak,
        nvml=nvml,
        flop_shape=model_shape(model),
        attention_dropout=attention_dropout,
        parameter_counts=count_parameters(model),
        memory_tracker=tensor_memory_tracker(model, optimizer, training.compile),
    )
    _resume(state)
    return state


def _build_model(
    spec: RunSpec, method: Method, num_labels: int, device: torch.device, total_steps: int
) -> tuple[nn.Module, float | None]:
    """The base model with the method applied, and the attention dropout it trains with."""
    training = spec.training
    model = load_model(
        spec.model,
        num_labels,
        device,
        method.quantization(spec.params),
        training.attention,
        training.attention_dropout,
    )
    attention_dropout = attention_dropout_of(model.config)
    if training.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model = method.apply(model, spec.params, MethodContext(total_steps=total_steps))
    return model, attention_dropout


def _optimisation(
    spec: RunSpec,
    method: Method,
    model: nn.Module,
    device: torch.device,
    precision: str,
    total_steps: int,
) -> tuple[torch.optim.Optimizer, Any, torch.amp.GradScaler]:
    """AdamW over the method's parameter groups, linear warm-up and decay, the fp16 scaler."""
    training = spec.training
    optimizer = torch.optim.AdamW(
        method.optimizer_groups(model, spec.params),
        lr=spec.params.learning_rate,
        weight_decay=training.weight_decay,
        fused=device.type == "cuda",
    )
    scheduler = get_linear_schedule_with_warmup(
        optimizer, warmup_steps(training.warmup_ratio, total_steps), total_steps
    )
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    return optimizer, scheduler, scaler


def warmup_steps(ratio: float, total_steps: int) -> int:
    """Steps of linear warm-up: the ratio of the run's steps, rounded up (as Hugging Face's
    Trainer does, so that a ratio above 0 always warms up)."""
    return math.ceil(ratio * total_steps)


def _resume(state: RunState) -> None:
    """Continue from the last finished epoch when the run left a checkpoint of this config."""
    checkpoint = load_checkpoint(Path(state.spec.run_dir), state.spec.config_hash)
    if checkpoint is None:
        return
    restore(checkpoint, state)
    LOG.info(f"  resuming after epoch {len(state.progress.epochs)} from its checkpoint")


# --- train -------------------------------------------------------------------------------


def train(state: RunState) -> None:
    """The epochs not done yet, each evaluated on the test split and then checkpointed."""
    for epoch in range(len(state.progress.epochs) + 1, state.training.epochs + 1):
        metrics = train_and_evaluate(state, epoch)
        tracking.log_epoch(metrics, state.progress.totals["train_steps"])
        save_checkpoint(state)
        split = "validation" if state.spec.role == "search" else "test"
        LOG.info(
            f"  epoch {epoch}: train loss {metrics['train_loss']:.4f}, {split} accuracy "
            f"{100 * metrics['eval']['accuracy']:.2f}%, train {metrics['train_time_s']:.1f} s, "
            f"eval {metrics['eval_time_s']:.1f} s"
        )


def train_and_evaluate(state: RunState, epoch: int) -> EpochMetrics:
    """One epoch of training, then an evaluation on the test split, each timed."""
    synchronize(state.device)
    start = time.perf_counter()
    tokens_before = state.progress.totals["train_tokens"]
    with state.memory_tracker.measure("train"):
        loss = train_epoch(state, epoch)
    state.progress.totals["train_tokens"] = tokens_before + int(
        distributed.all_sum(state.progress.totals["train_tokens"] - tokens_before)
    )
    synchronize(state.device)
    train_time = time.perf_counter() - start
    start = time.perf_counter()
    with state.memory_tracker.measure("eval"):
        metrics, state.predictions = distributed.evaluate(
            lambda split: evaluate(state, split), state.data.test
        )
    synchronize(state.device)
    eval_time = time.perf_counter() - start
    state.progress.totals["train_time_s"] += train_time
    state.progress.totals["eval_time_s"] += eval_time
    epoch_metrics: EpochMetrics = {
        "epoch": epoch,
        "train_loss": loss,
        "train_time_s": train_time,
        "eval_time_s": eval_time,
        "eval": metrics,
    }
    state.progress.epochs.append(epoch_metrics)
    return epoch_metrics


# --- finish ------------------------------------------------------------------------------


def save_trained(model: nn.Module, directory: Path, model_config: ModelConfig) -> float:
    """Save what the method trained (adapter + head, trained tensors, or the whole model); MiB."""
    if directory.exists():
        shutil.rmtree(directory)
    save_trained_model(model, directory, base_reloadable=model_config.init == "pretrained")
    return directory_size_mb(directory)


def finish(state: RunState) -> RunRecord:
    """Measure, save what was trained and the test predictions; return the run's record."""
    spec, data, totals = state.spec, state.data, state.progress.totals
    memory = memory_summary(state.device, state.nvml)
    memory["tensor_mib"] = state.memory_tracker.summary()
    run_dir = Path(spec.run_dir)
    model_size_mb = save_trained(state.model, run_dir / MODEL_DIR, spec.model)
    if not spec.training.keep_model:
        shutil.rmtree(run_dir / MODEL_DIR)
    predictions = predictions_record(
        spec.run_id, data.test.example_ids, data.test.labels, state.predictions
    )
    predictions.update(original_label_values(data.label_names, data.test.labels, state.predictions))
    write_json_atomic(predictions_file(run_dir), predictions)
    flops = flops_summary(
        state.flop_shape,
        [len(ids) for ids in data.train.input_ids],
        len(state.progress.epochs),
        [len(ids) for ids in data.test.input_ids],
        totals["train_time_s"],
        state.peak_flops,
        totals["eval_time_s"],
    )
    if "mfu_unavailable_because" in flops:  # the cached peak is too low: measure it next time
        forget_peak_flops(state.device, DTYPES[state.precision])
    trainable_params, total_params = state.parameter_counts
    measurements = {
        "trainable_params": trainable_params,
        "total_params": total_params,
        "trainable_percent": 100 * trainable_params / total_params,
        "memory": memory,
        "serving": serving_cost(
            state.model,
            state.method.merge_blocker(spec.params),
            data.test,
            data.pad_token_id,
            spec.training.eval_batch_size,
            state.device,
            _autocast(state),
        ),
        "model_size_mb": model_size_mb,
    }
    summary = train_summary(
        state.progress, len(data.test), state.precision, state.attention_dropout, flops
    )
    record = success_record(spec, state.progress, summary, measurements, environment(state.device))
    record["class_metrics"] = class_metrics(data.label_names, data.test.labels, state.predictions)
    return record


def execute_run(spec: RunSpec, progress: RunProgress | None = None) -> RunRecord:
    """The whole recipe: set up, train, finish."""
    state = setup(spec, progress)
    train(state)
    return finish(state)


# --- the run's own process ---------------------------------------------------------------


def run_worker(spec: RunSpec) -> None:
    """Entry point of a run's own process: the run, logged to the trackers it asks for."""
    configure_logging()
    if distributed.rank():  # a data-parallel worker past the first: rank 0 logs the run
        _run_and_record(spec)
        return
    with tracking.tracked_run(spec, record_file(spec.run_dir)):
        _run_and_record(spec)


def _run_and_record(spec: RunSpec) -> None:
    """Do the run; always leave a record behind, whatever happens."""
    # SIGTERM (a job scheduler, `kill`, the runner stopping us) ends the run like Ctrl-C.
    with sigterm_as_interrupt() as interrupts:
        _record_outcome(spec, interrupts)


def _record_outcome(spec: RunSpec, interrupts: InterruptGuard) -> None:
    quiet_libraries()
    record_path = record_file(spec.run_dir)
    progress = RunProgress(started_at=now_iso())
    try:
        record = execute_run(spec, progress)
    except KeyboardInterrupt:
        interrupts.ignore()  # a second signal must not cut the write
        record = failure_record(
            spec,
            "canceled",
            "Interrupted",
            "interrupted (Ctrl-C or SIGTERM); run again to resume from the last epoch",
            progress,
        )
        write_json_atomic(record_path, record)
        raise SystemExit(130) from None
    except Exception as exc:  # noqa: BLE001 - every failure becomes this run's record
        record = failure_record(
            spec, "failed", type(exc).__name__, str(exc), progress, traceback.format_exc()
        )
        write_json_atomic(record_path, record)
        raise SystemExit(1) from None
    write_json_atomic(record_path, record)
    remove_checkpoint(Path(spec.run_dir))
