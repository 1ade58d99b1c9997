"""Batches: the order examples are fed in, and padding them into tensors."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from peftbench.data.prepare import TokenizedSplit


def batch_order(
    lengths: list[int], batch_size: int, seed: int | None, group_by_length: bool
) -> list[list[int]]:
    """Example indices per batch: shuffled with `seed` (None keeps order), optionally
    grouped so that each batch holds examples of similar length (sorted within chunks of
    50 batches, then the batches shuffled, as Hugging Face's LengthGroupedSampler does)."""
    indices = list(range(len(lengths)))
    rng = random.Random(seed)
    if seed is not None:
        rng.shuffle(indices)
    if group_by_length:
        chunk = batch_size * 50
        indices = [
            i
            for start in range(0, len(indices), chunk)
            for i in sorted(indices[start : start + chunk], key=lambda i: -lengths[i])
        ]
    batches = [indices[i : i + batch_size] for i in range(0, len(indices), batch_size)]
    if group_by_length and seed is not None:
        rng.shuffle(batches)
    return batches


def _pad(sequences: list[list[int]], width: int, value: int) -> torch.Tensor:
    padded = torch.full((len(sequences), width), value, dtype=torch.long)
    for row, sequence in enumerate(sequences):
        padded[row, : len(sequence)] = torch.tensor(sequence, dtype=torch.long)
    return padded


def collate(
    split: TokenizedSplit, indices: list[int], pad_token_id: int, pad_to: int | None
) -> dict[str, torch.Tensor]:
    """Pad one batch to its longest example, or to `pad_to` when given (right padding)."""
    sequences = [split.input_ids[i] for i in indices]
    width = pad_to or max(len(s) for s in sequences)
    batch = {
        "input_ids": _pad(sequences, width, pad_token_id),
        "attention_mask": _pad([[1] * len(s) for s in sequences], width, 0),
        "labels": torch.tensor([split.labels[i] for i in indices], dtype=torch.long),
    }
    if split.token_type_ids is not None:  # pair tasks on models with segment embeddings
        batch["token_type_ids"] = _pad([split.token_type_ids[i] for i in indices], width, 0)
    return batch
