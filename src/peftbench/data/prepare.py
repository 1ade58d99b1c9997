"""Read, check, map labels, subset and tokenise: a config's data as tokenised splits, cached."""

from __future__ import annotations

import json
import os
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from peftbench.config import DataConfig, stable_hash
from peftbench.data.checks import (
    check_class_count,
    check_splits,
    drop_duplicates,
    handle_invalid_rows,
)
from peftbench.data.labels import check_fractional, unify, vocabulary
from peftbench.data.sources import (
    RawSplit,
    describe_source,
    has_split,
    read_split,
    source_fingerprint,
    text_columns,
)
from peftbench.data.splits import holdout, stratified_subset
from peftbench.errors import PeftbenchError
from peftbench.progress import progress_bar

TOKENIZE_CHUNK = 1000
CACHE_VERSION = 2


@dataclass
class TokenizedSplit:
    input_ids: list[list[int]]
    labels: list[int]
    example_ids: list[int]  # position of each example in the split's subset
    token_type_ids: list[list[int]] | None = None  # segment ids of pair tasks, where used

    def __len__(self) -> int:
        return len(self.labels)

    def select(self, indices: list[int]) -> TokenizedSplit:
        """The examples at `indices`, in that order."""
        types = self.token_type_ids
        return TokenizedSplit(
            [self.input_ids[i] for i in indices],
            [self.labels[i] for i in indices],
            [self.example_ids[i] for i in indices],
            None if types is None else [types[i] for i in indices],
        )


@dataclass
class PreparedData:
    train: TokenizedSplit
    test: TokenizedSplit
    pad_token_id: int
    label_names: list[str]  # the original label values, by class id
    info: dict[str, Any] = field(default_factory=dict)  # the record's data_info
    validation: TokenizedSplit | None = None  # the source's own validation split, if any

    @property
    def num_labels(self) -> int:
        return len(self.label_names)


def _read_all(data: DataConfig) -> tuple[dict[str, RawSplit], list[str] | None, list[str]]:
    """The raw splits by role (train, test, validation where there is one), declared class
    names, and notes on where test and validation came from."""
    train, declared = read_split(data, data.train_split)
    splits = {"train": train}
    notes = []
    if data.test_split is not None:
        splits["test"] = read_split(data, data.test_split)[0]
    validation = data.validation_split
    if validation and validation != data.test_split and has_split(data, validation):
        splits["validation"] = read_split(data, validation)[0]
        notes.append(f"hyperparameter search evaluates on the source's {validation!r} split")
    return splits, declared, notes


def _carve_test(train: RawSplit, data: DataConfig) -> tuple[RawSplit, RawSplit, str]:
    kept, held = holdout(train.labels, data.test_fraction, data.subset_seed, "data.test_fraction")
    note = (
        f"test split carved from {data.train_split!r}: {len(held)} rows "
        f"({data.test_fraction:g}), stratified, seed {data.subset_seed} (data.test_split: null)"
    )
    return train.select(kept), train.select(held), note


def _map_labels(
    splits: dict[str, RawSplit], declared: list[str] | None, data: DataConfig
) -> tuple[dict[str, list[int]], list[str], dict[str, Any]]:
    """Label ids per split, class names, and the recorded mapping."""
    check_fractional(splits, data.label_column)
    values = [v for split in splits.values() for v in split.labels]
    unified = unify(values)
    start = 0
    per_split = {}
    for name, split in splits.items():
        per_split[name] = unified[start : start + len(split.labels)]
        start += len(split.labels)
    names, to_id, order = vocabulary(unified, declared, data)
    check_class_count(names, data)
    mapping = {"column": data.label_column, "order": order, "names": names}
    if order != "declared by the source":
        mapping["values"] = {str(v): i for v, i in to_id.items()}
    return {n: [to_id[v] for v in labels] for n, labels in per_split.items()}, names, mapping


def _tokenize(tokenizer: Any, raw: RawSplit, max_length: int, split: str) -> tuple[list, Any]:
    """Token ids of each example (and segment ids for pairs where the tokenizer gives them)."""
    ids: list[list[int]] = []
    types: list[list[int]] | None = [] if raw.pairs is not None else None
    with progress_bar(total=len(raw.texts), desc=f"tokenising {split}", unit="text") as progress:
        for start in range(0, len(raw.texts), TOKENIZE_CHUNK):
            end = start + TOKENIZE_CHUNK
            pairs = None if raw.pairs is None else raw.pairs[start:end]
            encoded = tokenizer(
                raw.texts[start:end], pairs, truncation="longest_first", max_length=max_length
            )
            ids.extend(encoded["input_ids"])
            if types is not None:
                if "token_type_ids" not in encoded:
                    types = None
                else:
                    types.extend(encoded["token_type_ids"])
            progress.update(len(raw.texts[start:end]))
    return ids, types


def _subset(
    name: str, raw: RawSplit, label_ids: list[int], size: int | None, data: DataConfig
) -> tuple[RawSplit, list[int]]:
    chosen = stratified_subset(label_ids, size, data.subset_seed, f"data.{name}_size")
    return raw.select(chosen), [label_ids[i] for i in chosen]


def _balance(labels: list[int], names: list[str]) -> dict[str, int]:
    counts = Counter(labels)
    return {names[k]: counts.get(k, 0) for k in range(len(names))}


@dataclass
class ChosenExamples:
    """The examples a config trains and tests on, before tokenising: each split's subset and
    its label ids, the class names and label mapping, and what the checks found."""

    subsets: dict[str, RawSplit]
    labels: dict[str, list[int]]
    names: list[str]
    mapping: dict[str, Any]
    balance: dict[str, dict[str, int]]
    warnings: list[str]
    notes: list[str]


def _check_not_empty(splits: dict[str, RawSplit], data: DataConfig) -> None:
    """A split without rows (a header-only file, every row dropped) is an error, not a run
    that evaluates on nothing."""
    for name, raw in splits.items():
        if raw.labels:
            continue
        switches = [f"data.{k}" for k in ("drop_invalid", "drop_duplicates") if getattr(data, k)]
        after = f" left after {' and '.join(switches)}" if switches else ""
        also = f", or turn off {' / '.join(switches)}" if switches else ""
        raise PeftbenchError(
            f"the {name} split has no rows{after}: nothing to "
            f"{'train' if name == 'train' else 'evaluate'} on; fix: check the source's {name} "
            f"data{also}"
        )


def choose_examples(data: DataConfig) -> ChosenExamples:
    """Read and check the splits, map the labels, and draw each split's stratified subset:
    exactly the examples a run of this data config uses (`prepare_data` then tokenises them)."""
    splits, declared, notes = _read_all(data)
    warnings: list[str] = []
    for name in list(splits):
        splits[name], dropped = handle_invalid_rows(splits[name], name, data)
        warnings += dropped
    if "test" not in splits:
        splits["train"], splits["test"], note = _carve_test(splits["train"], data)
        notes.append(note)
    warnings += check_splits(splits["train"], splits["test"])
    if data.drop_duplicates:
        splits["train"], splits["test"], dropped = drop_duplicates(splits["train"], splits["test"])
        warnings += dropped
    _check_not_empty(splits, data)
    label_ids, names, mapping = _map_labels(splits, declared, data)
    chosen = ChosenExamples({}, {}, names, mapping, {}, warnings, notes)
    sizes = {"train": data.train_size, "test": data.test_size, "validation": None}
    for name, raw in splits.items():
        subset, labels = _subset(name, raw, label_ids[name], sizes[name], data)
        chosen.subsets[name], chosen.labels[name] = subset, labels
        chosen.balance[name] = _balance(labels, names)
        missing = [k for k, count in chosen.balance[name].items() if count == 0]
        if missing and name == "train":
            raise PeftbenchError(
                f"the train subset has no examples of class(es) {', '.join(missing)}: the "
                f"model could never learn them; fix: a larger data.train_size or other data"
            )
        if missing:
            warnings.append(f"{name}: no examples of class(es) {', '.join(missing)}")
    return chosen


def train_token_lengths(data: DataConfig, tokenizer: Any, max_length: int) -> list[int]:
    """The token count of each training example a run of this config uses (truncated at
    `max_length`), tokenising the train subset only: what a plan needs, cheaply."""
    subset = choose_examples(data).subsets["train"]
    return [len(ids) for ids in _tokenize(tokenizer, subset, max_length, "train")[0]]


def _cache_file(data: DataConfig, tokenizer_id: str, max_length: int, cache_dir: Path) -> Path:
    """Where the tokens of this data are cached: named by everything that makes them, the
    data's content included (an edited file is read afresh)."""
    key = {
        "data": data,
        "source": source_fingerprint(data),
        "tokenizer": tokenizer_id,
        "max_length": max_length,
        "v": CACHE_VERSION,
    }
    return cache_dir / f"tokens-{stable_hash(key)[:16]}.pt"


def prepare_data(
    data: DataConfig, tokenizer: Any, tokenizer_id: str, max_length: int, cache_dir: Path
) -> tuple[PreparedData, Path]:
    """Read, check, subset and tokenise the splits; reuse the cached tokens when nothing changed.

    Returns the data and its cache file, from which each run's worker process loads it.
    """
    cache_file = _cache_file(data, tokenizer_id, max_length, cache_dir)
    if cache_file.exists():
        try:
            return load_prepared(cache_file), cache_file
        except Exception:  # a corrupt cache is rebuilt, never trusted
            cache_file.unlink(missing_ok=True)

    chosen = choose_examples(data)
    tokenized: dict[str, TokenizedSplit] = {}
    for name, subset in chosen.subsets.items():
        ids, types = _tokenize(tokenizer, subset, max_length, name)
        labels = chosen.labels[name]
        tokenized[name] = TokenizedSplit(ids, labels, list(range(len(labels))), types)
    subsets, warnings, names = chosen.subsets, chosen.warnings, chosen.names
    overlap = len(set(subsets["train"].texts) & set(subsets["test"].texts))
    if overlap and data.text_pair_column is None:
        warnings.append(f"subsets: {overlap} test texts also appear in the train subset")

    train = tokenized["train"]
    info = {
        "source": describe_source(data),
        "text_columns": text_columns(data),
        "text_pair_column": data.text_pair_column,
        "label_column": data.label_column,
        "num_labels": len(names),
        "label_names": names,
        "label_mapping": chosen.mapping,
        "train_size": len(train),
        "test_size": len(tokenized["test"]),
        "label_balance": chosen.balance,
        "mean_train_tokens": sum(map(len, train.input_ids)) / len(train),
        "train_truncated_fraction": sum(len(i) >= max_length for i in train.input_ids) / len(train),
        "splits": chosen.notes,
        "warnings": warnings,
    }
    prepared = PreparedData(
        train,
        tokenized["test"],
        int(tokenizer.pad_token_id or 0),
        names,
        info,
        tokenized.get("validation"),
    )
    save_prepared(prepared, cache_file)
    return prepared, cache_file


def carve_validation(prepared: PreparedData, size: float, seed: int) -> PreparedData:
    """The data a hyperparameter search sees: the source's validation split where it has one,
    else a stratified validation set split off the training subset (`size`: a fraction of it
    below 1, or a count). Either way it evaluates on that set in place of the test split,
    which it does not contain: a search cannot see the test set."""
    names = prepared.label_names
    if prepared.validation is not None:
        info = {
            **prepared.info,
            "evaluated_on": "the source's validation split",
            "test_size": len(prepared.validation),
        }
        return PreparedData(prepared.train, prepared.validation, prepared.pad_token_id, names, info)
    train = prepared.train
    rest, held = holdout(train.labels, size, seed, "data.validation_size")
    info = {
        **prepared.info,
        "evaluated_on": "validation split carved from the training subset",
        "train_size": len(rest),
        "test_size": len(held),
        "label_balance": {
            split: {names[k]: sum(train.labels[i] == k for i in idx) for k in range(len(names))}
            for split, idx in (("train", rest), ("validation", held))
        },
    }
    return PreparedData(train.select(rest), train.select(held), prepared.pad_token_id, names, info)


def save_prepared(prepared: PreparedData, cache_file: Path) -> None:
    """Write prepared data for the workers (temporary file, then rename)."""
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=cache_file.parent, prefix=cache_file.stem, suffix=".tmp")
        os.close(fd)
        torch.save(_to_cache(prepared), tmp)
        os.replace(tmp, cache_file)
    except OSError as exc:
        raise PeftbenchError(
            f"the token cache {cache_file} cannot be written ({exc.strerror}); fix: choose "
            "another output directory with output_dir=PATH"
        ) from exc


def _to_cache(prepared: PreparedData) -> dict:
    return {
        "train": vars(prepared.train),
        "test": vars(prepared.test),
        "validation": None if prepared.validation is None else vars(prepared.validation),
        "pad_token_id": prepared.pad_token_id,
        "label_names": prepared.label_names,
        "info": json.dumps(prepared.info),
    }


def _from_cache(blob: dict) -> PreparedData:
    validation = blob.get("validation")
    return PreparedData(
        TokenizedSplit(**blob["train"]),
        TokenizedSplit(**blob["test"]),
        blob["pad_token_id"],
        blob["label_names"],
        json.loads(blob["info"]),
        None if validation is None else TokenizedSplit(**validation),
    )


def load_prepared(cache_file: Path) -> PreparedData:
    """Prepared data from the cache file that prepare_data wrote."""
    return _from_cache(torch.load(cache_file, weights_only=True))
