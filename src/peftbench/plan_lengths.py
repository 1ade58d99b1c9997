"""The sequence length a typical training batch is padded to, from the data, for `plan`.

Worst-case memory assumes every batch at max_length; real batches are padded to their longest
example (padding: dynamic), and grouping by length packs similar lengths together. When the
data is at hand (data.local_path, a local dataset path, or $PEFTBENCH_DATA_DIR/<dataset>) and
so is the model's tokenizer, the train subset a run would use is tokenised (the tokenizer
only: no model) and batched exactly as `loop.train_epoch` batches it, every seed and epoch of
the config, to give the width of each micro-batch; the typical one is their median.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from peftbench.config import ExperimentConfig, TrainingConfig
from peftbench.data import batch_order, resolve_local_copy
from peftbench.data.prepare import train_token_lengths
from peftbench.errors import PeftbenchError
from peftbench.loop import micro_batches
from peftbench.models import load_tokenizer


@dataclass(frozen=True)
class TypicalLength:
    """Micro-batch widths of the config's training runs: median (the typical step), 90th
    percentile and the longest, in tokens; `batches` = how many there are."""

    median: int
    p90: int
    longest: int
    batches: int


def padded_widths(lengths: list[int], training: TrainingConfig, seeds: list[int]) -> list[int]:
    """The width (tokens) of every training micro-batch over all seeds and epochs, as the
    training loop builds them: the same seeded order, micro-batches, and padding."""
    widths = []
    for seed in seeds:
        for epoch in range(1, training.epochs + 1):
            order = batch_order(
                lengths, training.train_batch_size, seed * 1000 + epoch, training.group_by_length
            )
            for indices in order:
                for part in micro_batches(indices, training.gradient_accumulation_steps):
                    if training.padding == "max_length":
                        widths.append(training.max_length)
                    else:
                        widths.append(max(lengths[i] for i in part))
    return widths


def typical_length(config: ExperimentConfig) -> tuple[TypicalLength | None, str]:
    """The typical padded training length from the data, or None and why it is not known."""
    training = config.training
    if training.padding == "max_length":
        width = training.max_length
        return TypicalLength(width, width, width, 0), "padding: max_length pads every batch"
    try:
        at_hand = resolve_local_copy(config.data) is not None
    except PeftbenchError as exc:
        return None, str(exc)
    if not at_hand:
        return None, (
            f"the typical figure needs the data at hand: {config.data.dataset} is not a local "
            "path and neither data.local_path nor $PEFTBENCH_DATA_DIR/<dataset> holds it"
        )
    try:
        tokenizer = load_tokenizer(config.model)
        lengths = train_token_lengths(config.data, tokenizer, training.max_length)
    except PeftbenchError as exc:
        return None, f"the typical figure needs the data and the model's tokenizer: {exc}"
    widths = sorted(padded_widths(lengths, training, list(config.seeds)))
    typical = TypicalLength(
        median=int(statistics.median_low(widths)),
        p90=widths[min(len(widths) - 1, (9 * len(widths)) // 10)],
        longest=widths[-1],
        batches=len(widths),
    )
    grouped = "grouped by length" if training.group_by_length else "in random order"
    micro = math.ceil(training.train_batch_size / training.gradient_accumulation_steps)
    return typical, (
        f"from the data: {len(lengths):,} train examples tokenised (median {_median(lengths)} "
        f"tokens), {typical.batches:,} micro-batches of {micro} "
        f"over {len(config.seeds)} seed(s) x {training.epochs} epoch(s), {grouped}, padded to "
        f"their longest example: median {typical.median}, 90th percentile {typical.p90}, "
        f"longest {typical.longest} tokens"
    )


def _median(values: list[int]) -> int:
    return int(statistics.median_low(values))
