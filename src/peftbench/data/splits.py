"""Seeded, stratified subsets and the splits carved from a training split."""

from __future__ import annotations

import random
from collections import Counter

from peftbench.errors import PeftbenchError


def stratified_subset(labels: list, size: int | None, seed: int, where: str) -> list[int]:
    """Indices of a seeded subset keeping the class proportions (None: all rows, shuffled)."""
    if size is not None and size > len(labels):
        raise PeftbenchError(
            f"{where}={size} but the split has only {len(labels)} rows; "
            f"fix: lower {where} or set it to null to use the whole split"
        )
    indices = list(range(len(labels)))
    if size is None or size == len(labels):
        random.Random(seed).shuffle(indices)
        return indices
    from sklearn.model_selection import train_test_split

    counts = Counter(labels)
    # sklearn stratifies only when each side can hold every class (else it raises).
    each_side = min(size, len(labels) - size) >= len(counts)
    stratify = labels if min(counts.values()) >= 2 and each_side else None
    chosen, _ = train_test_split(indices, train_size=size, random_state=seed, stratify=stratify)
    return list(chosen)


def holdout(labels: list, size: float, seed: int, where: str) -> tuple[list[int], list[int]]:
    """(kept, held out) row indices: a seeded, stratified share of the rows set aside.

    `size` is a fraction (< 1) or a count. Both parts keep the source's order.
    """
    count = round(size * len(labels)) if size < 1 else int(size)
    if not 0 < count < len(labels):
        raise PeftbenchError(
            f"{where}={size} leaves no rows on one side of a split of {len(labels)} rows; "
            f"fix: set {where} to a fraction between 0 and 1"
        )
    held = set(stratified_subset(labels, count, seed, where))
    return [i for i in range(len(labels)) if i not in held], sorted(held)
