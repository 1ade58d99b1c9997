"""The loops of one run: an epoch of optimiser steps, and an evaluation pass over a split.

Both work on a RunState, which train.setup builds (and tests may build around a model of their
own). The state carries what the loops need and what they advance: the step and token totals.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from peftbench import distributed, tracking
from peftbench.class_metrics import classification_metrics
from peftbench.config import TrainingConfig
from peftbench.data import PreparedData, TokenizedSplit, batch_order, collate
from peftbench.flops import ModelShape, PeakFlops
from peftbench.interrupts import raise_if_interrupted
from peftbench.measure import NvmlPeak
from peftbench.methods import Method
from peftbench.models import DTYPES
from peftbench.progress import progress_bar
from peftbench.results import RunProgress
from peftbench.run_spec import RunSpec


class NonFiniteLoss(RuntimeError):
    """The training loss became NaN or infinite."""


@dataclass
class RunState:
    """One run while it trains: built by train.setup, advanced by train.train, read by finish."""

    spec: RunSpec
    device: torch.device
    precision: str  # the dtype computed in: fp32, bf16 or fp16
    data: PreparedData
    method: Method
    model: nn.Module  # what is checkpointed and saved
    optimizer: torch.optim.Optimizer
    scheduler: Any  # a torch learning-rate scheduler, stepped once per optimiser step
    scaler: torch.amp.GradScaler
    progress: RunProgress = field(default_factory=RunProgress)  # epochs and totals so far
    # What runs forward and backward: torch.compile(model) with training.compile, else model.
    forward_model: nn.Module | None = None
    predictions: list[int] = field(default_factory=list)  # on the test split, last epoch
    # Measured in setup, reported by finish.
    peak_flops: PeakFlops | None = None  # of this device and dtype
    nvml: NvmlPeak | None = None  # GPU memory sampler (CUDA only)
    flop_shape: ModelShape | None = None
    attention_dropout: float | None = None  # the probability trained with
    parameter_counts: tuple[int, int] = (0, 0)  # (trainable, total)
    # Tensor memory by component (peftbench.memory); set by setup, around train and evaluate.
    memory_tracker: Any = None

    def __post_init__(self) -> None:
        if self.forward_model is None:
            self.forward_model = self.model

    @property
    def training(self) -> TrainingConfig:
        return self.spec.training


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work, so that wall-clock timings cover it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _autocast(state: RunState) -> Any:
    return torch.autocast(
        device_type=state.device.type,
        dtype=DTYPES[state.precision],
        enabled=state.precision != "fp32",
    )


def _to(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {key: value.to(device, non_blocking=True) for key, value in batch.items()}


def _pad_to(training: TrainingConfig) -> int | None:
    return training.max_length if training.padding == "max_length" else None


def evaluate(state: RunState, split: TokenizedSplit) -> tuple[dict[str, float], list[int]]:
    """Metrics on a split and the prediction for each example, in the split's order."""
    model, training = state.forward_model, state.training
    model.eval()
    predictions = [0] * len(split)
    total_loss = 0.0
    lengths = [len(ids) for ids in split.input_ids]
    # Sorted by length (no shuffle) so that each batch pads as little as possible.
    order = batch_order(lengths, training.eval_batch_size, None, training.sort_eval_by_length)
    with torch.no_grad(), progress_bar(total=len(split), desc="  evaluating", unit="ex") as bar:
        for indices in order:
            raise_if_interrupted()
            batch = collate(split, indices, state.data.pad_token_id, _pad_to(training))
            with _autocast(state):
                output = model(**_to(batch, state.device))
            total_loss += output.loss.float().item() * len(indices)
            for index, predicted in zip(indices, output.logits.argmax(-1).tolist(), strict=True):
                predictions[index] = predicted
            bar.update(len(indices))
    metrics = classification_metrics(split.labels, predictions)
    metrics["loss"] = total_loss / len(split)
    return metrics, predictions


def micro_batches(indices: list[int], accumulation_steps: int) -> list[list[int]]:
    """Split one optimiser step's examples into `accumulation_steps` near-equal parts."""
    size = math.ceil(len(indices) / accumulation_steps)
    return [indices[i : i + size] for i in range(0, len(indices), size)]


def _accumulate(state: RunState, indices: list[int], epoch: int, step: int) -> tuple[float, int]:
    """Forward and backward over one optimiser step's examples: (this worker's share of the
    step's loss, its real tokens)."""
    data, training = state.data, state.training
    step_loss, tokens = 0.0, 0
    parts = micro_batches(indices, training.gradient_accumulation_steps)
    for number, (whole, mine) in enumerate(zip(parts, distributed.shard(parts), strict=True)):
        # A worker with no example of a micro-batch (fewer examples than workers) still runs
        # one, weighted 0, so that it takes part in the gradient exchange and adds nothing.
        batch = collate(data.train, mine or whole[:1], data.pad_token_id, _pad_to(training))
        # Several workers: gradients are exchanged once, after the step's last micro-batch.
        with distributed.exchange_gradients(state.forward_model, number == len(parts) - 1):
            with _autocast(state):
                loss = state.forward_model(**_to(batch, state.device)).loss
            if not torch.isfinite(loss):
                raise NonFiniteLoss(
                    f"training loss became {loss.item()} at epoch {epoch}, step {step} "
                    "(try a lower learning rate, or precision: fp32)"
                )
            # Weighted so that the step's gradient is that of the whole batch's mean loss.
            share = len(mine) / len(indices)
            state.scaler.scale(loss * share * distributed.gradient_weight()).backward()
        if mine:
            tokens += int(batch["attention_mask"].sum())
            step_loss += loss.item() * share
    return step_loss, tokens


def _optimizer_step(state: RunState, trainable: list[nn.Parameter]) -> None:
    state.scaler.unscale_(state.optimizer)
    torch.nn.utils.clip_grad_norm_(trainable, state.training.max_grad_norm)
    scale = state.scaler.get_scale()
    state.scaler.step(state.optimizer)
    state.scaler.update()
    # fp16: a step the scaler skipped (inf or NaN gradients; it then lowers the scale) does
    # not advance the learning-rate schedule either, as in Hugging Face's Trainer.
    if state.scaler.get_scale() >= scale:
        state.scheduler.step()


def train_epoch(state: RunState, epoch: int) -> float:
    """One pass over the training split; returns its mean loss (over every worker's examples).

    Adds the epoch's optimiser steps and real (non-padding) tokens to the state's totals.
    `method.after_step` (if any) is called after each optimiser step with the run's step count.
    """
    model, training, totals = state.forward_model, state.training, state.progress.totals
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    lengths = [len(ids) for ids in state.data.train.input_ids]
    losses: list[float] = []
    tokens = 0
    # A different, seeded order each epoch: repeatable, and the same for every method.
    order = batch_order(
        lengths, training.train_batch_size, state.spec.seed * 1000 + epoch, training.group_by_length
    )
    with progress_bar(total=len(order), desc=f"  epoch {epoch} training", unit="step") as bar:
        for indices in order:
            raise_if_interrupted()
            step_loss, step_tokens = _accumulate(state, indices, epoch, len(losses) + 1)
            _optimizer_step(state, trainable)
            if state.method.after_step is not None:  # on the model itself, not its DDP wrapper
                state.method.after_step(state.model, totals["train_steps"] + len(losses) + 1)
            state.optimizer.zero_grad(set_to_none=True)
            # Several workers: each computed its share of the step's loss; the step's is the sum.
            step_loss = distributed.all_sum(step_loss)
            losses.append(step_loss)
            tokens += step_tokens
            step = totals["train_steps"] + len(losses)
            tracking.log_step(step, step_loss, state.scheduler.get_last_lr()[0])
            bar.set_postfix(loss=f"{step_loss:.4f}")
            bar.update(1)
    totals["train_steps"] += len(losses)
    totals["train_tokens"] += tokens
    return sum(losses) / len(losses)
