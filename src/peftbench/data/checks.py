"""Checks on the rows read, before anything is trained: invalid rows, duplicates, overlap."""

from __future__ import annotations

from peftbench.config import DataConfig
from peftbench.data.labels import is_missing, normalise
from peftbench.data.sources import RawSplit, text_columns
from peftbench.errors import PeftbenchError

SHOWN_ROWS = 5


def _problems(split: RawSplit, data: DataConfig) -> dict[str, list[int]]:
    """Row indices of each kind of invalid row."""
    found: dict[str, list[int]] = {}
    columns = ", ".join(repr(c) for c in text_columns(data))
    checks = [
        (f"an empty label (column {data.label_column!r})", split.labels, is_missing),
        (f"an empty text (column {columns})", split.texts, lambda t: t is None),
    ]
    if split.pairs is not None:
        checks.append(
            (
                f"an empty second text (column {data.text_pair_column!r})",
                split.pairs,
                lambda t: t is None,
            )
        )
    for kind, values, bad in checks:
        rows = [i for i, v in enumerate(values) if bad(v)]
        if rows:
            found[kind] = rows
    return found


def handle_invalid_rows(split: RawSplit, name: str, data: DataConfig) -> tuple[RawSplit, list[str]]:
    """Rows with an empty label or text: an error naming them, or (data.drop_invalid) dropped
    with a warning. Returns the split with normalised labels, and the warnings."""
    problems = _problems(split, data)
    warnings = []
    if problems:
        summary = "; ".join(
            f"{len(rows)} row(s) with {kind}, first: "
            + ", ".join(split.locate(i) for i in rows[:SHOWN_ROWS])
            for kind, rows in problems.items()
        )
        if not data.drop_invalid:
            raise PeftbenchError(
                f"{name} split: {summary} (rows counted from 1 after any header). Fix: clean the "
                "data, or set data.drop_invalid: true to drop such rows (the count is recorded)"
            )
        bad = {i for rows in problems.values() for i in rows}
        split = split.select([i for i in range(len(split.labels)) if i not in bad])
        warnings.append(f"{name}: dropped {len(bad)} invalid row(s) (data.drop_invalid): {summary}")
        if not split.labels:
            raise PeftbenchError(f"{name} split: every row is invalid ({summary})")
    labels = [
        normalise(v, f"{name} split, {split.locate(i)}", data.label_column)
        for i, v in enumerate(split.labels)
    ]
    return RawSplit(split.texts, labels, split.pairs, split.parts, split.positions), warnings


def _keys(split: RawSplit) -> list[tuple]:
    """What makes two examples the same: the text, and the second text of a pair."""
    pairs = split.pairs or [None] * len(split.texts)
    return list(zip(split.texts, pairs, strict=True))


def drop_duplicates(train: RawSplit, test: RawSplit) -> tuple[RawSplit, RawSplit, list[str]]:
    """Keep the first copy of each example in each split, and drop test examples seen in train."""

    def unique(split: RawSplit, exclude: set) -> RawSplit:
        seen = set(exclude)
        keep = [i for i, key in enumerate(_keys(split)) if not (key in seen or seen.add(key))]
        return split.select(keep)

    clean_train = unique(train, set())
    clean_test = unique(test, set(_keys(clean_train)))
    notes = [
        f"dropped {len(train.texts) - len(clean_train.texts)} duplicate train texts and "
        f"{len(test.texts) - len(clean_test.texts)} test texts duplicated or seen in train "
        "(data.drop_duplicates)"
    ]
    return clean_train, clean_test, notes


def check_splits(train: RawSplit, test: RawSplit) -> list[str]:
    """Warnings about the whole splits: duplicates within a split, train/test overlap."""
    warnings = []
    for name, split in (("train", train), ("test", test)):
        keys = _keys(split)
        duplicates = len(keys) - len(set(keys))
        if duplicates:
            warnings.append(f"{name}: {duplicates} duplicate texts")
    overlap = len(set(_keys(train)) & set(_keys(test)))
    if overlap:
        warnings.append(
            f"{overlap} test texts also appear in train (set data.drop_duplicates: true to "
            "drop them)"
        )
    return warnings


def check_class_count(label_names: list[str], data: DataConfig) -> None:
    """At least two classes, and as many as data.num_labels says when it is given."""
    if len(label_names) < 2:
        raise PeftbenchError(
            f"column {data.label_column!r} holds a single class ({', '.join(label_names)}); "
            "classification needs at least two. Fix: data.label_column"
        )
    if data.num_labels is not None and data.num_labels != len(label_names):
        more = "more" if len(label_names) > data.num_labels else "fewer"
        raise PeftbenchError(
            f"column {data.label_column!r} holds {len(label_names)} classes "
            f"({', '.join(label_names[:20])}), {more} than data.num_labels={data.num_labels}; "
            "fix data.num_labels (or set it to null to count them), or the labels"
        )
