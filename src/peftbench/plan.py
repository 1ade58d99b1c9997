"""`peftbench plan`: what an experiment will run, with exact trainable parameter counts.

Works offline: the models are built with random weights from the architecture alone (the
model's own config, or the copy that ships with peftbench), so no weights are needed.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from peftbench.config import ExperimentConfig
from peftbench.memory import MIB
from peftbench.methods import Method, MethodContext, get_method
from peftbench.methods.targets import describe_adapted
from peftbench.models import architecture_for_planning, build_random_model, count_parameters

DEFAULT_PLAN_LABELS = 2


def count_method_parameters(config: ExperimentConfig) -> list[dict]:
    """Trainable / total parameters for each method entry, at the model's real shapes.

    A 4-bit base stores the same logical weights, so QLoRA is counted on the unquantised
    architecture: its adapter and head are identical.
    """
    num_labels = config.data.num_labels or DEFAULT_PLAN_LABELS
    architecture, source = architecture_for_planning(config.model, num_labels)
    training = config.training
    steps_per_epoch = math.ceil((config.data.train_size or 1) / training.train_batch_size)
    context = MethodContext(total_steps=steps_per_epoch * training.epochs)
    rows = []
    for entry in config.methods:
        method = get_method(entry.method)
        row = {
            "label": entry.label,
            "method": entry.method,
            "learning_rate": entry.params.learning_rate,
            "architecture_source": source,
            "error": None,
        }
        try:
            trainable, total, targets = _count(method, architecture, entry.params, context)
        except Exception as exc:  # noqa: BLE001 - reported in the plan; the run records it
            row["error"] = f"{type(exc).__name__}: {exc}"
            rows.append({**row, "trainable_params": None, "total_params": None})
            continue
        rows.append(
            {
                **row,
                "trainable_params": trainable,
                "total_params": total,
                "trainable_percent": 100 * trainable / total,
                "targets": targets,
            }
        )
    return rows


def _count(method: Method, architecture: Any, params: Any, context: MethodContext) -> tuple:
    """(trainable, total) for a method on the architecture, built without allocating weights
    (meta device) where the method allows, with real random weights where it must run the
    model (prefix tuning checks that the encoder uses its prefix)."""
    try:
        with torch.device("meta"):
            model = method.apply(build_random_model(architecture), params, context)
    except (RuntimeError, NotImplementedError, ValueError):
        # Random weights from a fixed seed, without touching the caller's random stream.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = method.apply(build_random_model(architecture), params, context)
    return (*count_parameters(model), describe_adapted(model))


BYTES_FP32 = 4
ADAM_STATE_BYTES = 8  # two fp32 moments per trained parameter


def estimate_resources(config: ExperimentConfig, rows: list[dict]) -> dict[str, float]:
    """Rough disk and memory needs in MiB: disk for what runs save and checkpoint, memory for
    the largest run's weights, gradients and optimiser state (activations come on top)."""
    saved = checkpoint = memory = 0.0
    for row in rows:
        if row["error"]:
            continue  # cannot be built: its run will fail at once and record why
        trained = row["trainable_params"]
        # Full fine-tuning saves the model; the others save adapter + head.
        whole = get_method(row["method"]).saves_whole_model
        model_file = (row["total_params"] if whole else trained) * BYTES_FP32
        if config.training.keep_model:
            saved += model_file * len(config.seeds)
        checkpoint = max(checkpoint, trained * (BYTES_FP32 + ADAM_STATE_BYTES) + model_file)
        weights = row["total_params"] * BYTES_FP32
        memory = max(memory, weights + trained * (BYTES_FP32 + ADAM_STATE_BYTES))
    return {"disk_mb": (saved + checkpoint) / MIB, "memory_mb": memory / MIB}


def describe_plan(config: ExperimentConfig) -> str:
    """A readable plan: data, training, and one line per method with its parameter counts."""
    data, training = config.data, config.training
    rows = count_method_parameters(config)
    steps = (
        math.ceil(data.train_size / training.train_batch_size) * training.epochs
        if data.train_size
        else None
    )
    lines = [
        f"experiment: {config.name}  ->  {config.output_path}",
        f"model: {config.model.name} (init: {config.model.init}; "
        f"architecture from the {rows[0]['architecture_source']})",
        f"data: {data.dataset}, train {data.train_size or 'all'} / test {data.test_size or 'all'} "
        f"examples (stratified, subset seed {data.subset_seed}), "
        f"{data.num_labels or DEFAULT_PLAN_LABELS} classes",
        f"training: {training.epochs} epochs, batch {training.train_batch_size} "
        f"(eval {training.eval_batch_size}), max length {training.max_length} tokens, "
        f"padding {training.padding}, precision {training.precision}"
        + (f", {steps} optimiser steps per run" if steps else ""),
        f"seeds: {config.seeds}  ->  {len(config.methods) * len(config.seeds)} runs",
        "",
        "| run label | method | learning rate | trainable params | % of total | total params |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        if row["error"]:
            lines.append(
                f"| {row['label']} | {row['method']} | {row['learning_rate']:g} | "
                f"cannot be applied to this model: {row['error'][:200]} | | |"
            )
            continue
        lines.append(
            f"| {row['label']} | {row['method']} | {row['learning_rate']:g} | "
            f"{row['trainable_params']:,} | {row['trainable_percent']:.3f} | "
            f"{row['total_params']:,} |"
        )
    targets = [f"- {row['label']}: {row['targets']}" for row in rows if row.get("targets")]
    if targets:
        lines += ["", "Modules each method adapts (resolved for this architecture):", *targets]
    return "\n".join(lines)
