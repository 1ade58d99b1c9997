"""Datasets in, tokenised train / test splits out: loading, stratified subsets, checks, batching.

Sources: a Hub dataset id, a local directory of Parquet / CSV / JSONL files (one or more files
per split, named after the split), or an extracted aclImdb folder. An offline copy of a Hub
dataset is found through data.local_path or $PEFTBENCH_DATA_DIR/<dataset>.
"""

from __future__ import annotations

import json
import os
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from peftbench.config import DataConfig, stable_hash
from peftbench.errors import PeftbenchError

DATA_DIR_ENV = "PEFTBENCH_DATA_DIR"
FILE_READERS = {".parquet": "parquet", ".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl"}
TOKENIZE_CHUNK = 1000


@dataclass
class RawSplit:
    texts: list[str]
    labels: list[Any]  # as stored: ints or strings


@dataclass
class TokenizedSplit:
    input_ids: list[list[int]]
    labels: list[int]
    example_ids: list[int]  # position of each example in the split's subset

    def __len__(self) -> int:
        return len(self.labels)

    def select(self, indices: list[int]) -> TokenizedSplit:
        """The examples at `indices`, in that order."""
        return TokenizedSplit(
            [self.input_ids[i] for i in indices],
            [self.labels[i] for i in indices],
            [self.example_ids[i] for i in indices],
        )


@dataclass
class PreparedData:
    train: TokenizedSplit
    test: TokenizedSplit
    pad_token_id: int
    label_names: list[str]
    info: dict[str, Any] = field(default_factory=dict)  # the record's data_info

    @property
    def num_labels(self) -> int:
        return len(self.label_names)


# ---------------------------------------------------------------------------------------------
# Finding and reading the source


def resolve_local_copy(data: DataConfig) -> Path | None:
    """The local directory to read for `data`, or None to use the Hub."""
    if data.local_path:
        path = Path(data.local_path).expanduser()
        if not path.exists():
            raise PeftbenchError(
                f"data.local_path {str(path)!r} does not exist; fix the path or remove the field "
                "to read the dataset from the Hub"
            )
        return path
    if Path(data.dataset).expanduser().exists():
        return Path(data.dataset).expanduser()
    root = os.environ.get(DATA_DIR_ENV)
    if root:
        for candidate in (Path(root) / data.dataset, Path(root) / data.dataset.split("/")[-1]):
            if candidate.is_dir():
                return candidate
    return None


def _is_aclimdb(path: Path) -> bool:
    return (path / "train" / "pos").is_dir() and (path / "train" / "neg").is_dir()


def _read_aclimdb(path: Path, split: str) -> RawSplit:
    texts: list[str] = []
    labels: list[str] = []
    for label in ("neg", "pos"):  # the original distribution's folders; sorted = ids 0, 1
        folder = path / split / label
        if not folder.is_dir():
            raise PeftbenchError(f"aclImdb folder {path} has no {split}/{label} directory")
        for review in sorted(folder.glob("*.txt")):
            texts.append(review.read_text(encoding="utf-8"))
            labels.append(label)
    return RawSplit(texts, labels)


def _split_files(path: Path, split: str) -> list[Path]:
    files = []
    for candidate in sorted(path.rglob("*")):
        if candidate.suffix not in FILE_READERS or not candidate.is_file():
            continue
        stem = candidate.stem
        in_split_dir = candidate.parent.name == split
        if (
            in_split_dir
            or stem == split
            or stem.startswith(f"{split}-")
            or stem.startswith(f"{split}_")
        ):
            files.append(candidate)
    return files


def _read_table(files: list[Path]) -> Any:
    import pandas as pd

    frames = []
    for file in files:
        kind = FILE_READERS[file.suffix]
        if kind == "parquet":
            frames.append(pd.read_parquet(file))
        elif kind == "csv":
            frames.append(pd.read_csv(file))
        else:
            frames.append(pd.read_json(file, lines=True))
    return pd.concat(frames, ignore_index=True)


def _parquet_label_names(files: list[Path], label_column: str) -> list[str] | None:
    """Class names stored in a Hub-exported Parquet file's metadata, if any."""
    parquet = [f for f in files if f.suffix == ".parquet"]
    if not parquet:
        return None
    import pyarrow.parquet as pq

    metadata = pq.read_schema(parquet[0]).metadata or {}
    try:
        features = json.loads(metadata[b"huggingface"])["info"]["features"]
        return list(features[label_column]["names"])
    except (KeyError, TypeError, ValueError):
        return None


def _columns(table_columns: list[str], data: DataConfig, where: str) -> None:
    for field_name in ("text_column", "label_column"):
        column = getattr(data, field_name)
        if column not in table_columns:
            raise PeftbenchError(
                f"{where} has no column {column!r} (data.{field_name}); its columns are: "
                f"{', '.join(map(str, table_columns))}. Fix: set data.{field_name}"
            )


def _read_local(path: Path, data: DataConfig, split: str) -> tuple[RawSplit, list[str] | None]:
    if _is_aclimdb(path):
        return _read_aclimdb(path, split), ["neg", "pos"]
    files = [path] if path.is_file() else _split_files(path, split)
    if not files:
        raise PeftbenchError(
            f"no {split!r} split in {path}: expected files named {split}.parquet / .csv / "
            f".jsonl, {split}-*.parquet, or a {split}/ folder (data.train_split / "
            "data.test_split name the splits)"
        )
    table = _read_table(files)
    _columns(list(table.columns), data, f"split {split!r} in {path}")
    texts = ["" if t is None else str(t) for t in table[data.text_column].tolist()]
    return RawSplit(texts, table[data.label_column].tolist()), _parquet_label_names(
        files, data.label_column
    )


def _read_hub(data: DataConfig, split: str) -> tuple[RawSplit, list[str] | None]:
    import datasets

    try:
        dataset = datasets.load_dataset(data.dataset, split=split)
    except Exception as exc:  # datasets raises many types for "not reachable / not found"
        raise PeftbenchError(
            f"dataset {data.dataset!r} (split {split!r}) could not be loaded from the Hub or its "
            f"cache ({type(exc).__name__}: {str(exc)[:200]}). Fix: set data.local_path or "
            f"${DATA_DIR_ENV} to a local copy, or check the dataset id and split names"
        ) from exc
    _columns(dataset.column_names, data, f"dataset {data.dataset!r} split {split!r}")
    feature = dataset.features[data.label_column]
    names = list(feature.names) if hasattr(feature, "names") else None
    return RawSplit(list(dataset[data.text_column]), list(dataset[data.label_column])), names


def read_split(data: DataConfig, split: str) -> tuple[RawSplit, list[str] | None]:
    """One split's texts and labels, and class names where the source declares them."""
    local = resolve_local_copy(data)
    return _read_local(local, data, split) if local else _read_hub(data, split)


# ---------------------------------------------------------------------------------------------
# Labels, subsets, checks


def label_vocabulary(
    train: RawSplit, test: RawSplit, declared: list[str] | None
) -> tuple[list[str], dict[Any, int]]:
    """Class names and the map from stored label to id (0..K-1)."""
    seen = sorted(set(train.labels) | set(test.labels), key=lambda v: (str(type(v)), v))
    if declared and all(isinstance(v, int) and 0 <= v < len(declared) for v in seen):
        return list(declared), {i: i for i in range(len(declared))}
    if declared and all(isinstance(v, str) and v in declared for v in seen):
        return list(declared), {name: i for i, name in enumerate(declared)}
    return [str(v) for v in seen], {v: i for i, v in enumerate(seen)}


def stratified_subset(labels: list[int], size: int | None, seed: int, where: str) -> list[int]:
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
    stratify = labels if min(counts.values()) >= 2 and size >= len(counts) else None
    chosen, _ = train_test_split(indices, train_size=size, random_state=seed, stratify=stratify)
    return list(chosen)


def check_texts(texts: list[str], split: str) -> list[str]:
    """Warnings about empty and duplicate texts in one split."""
    warnings = []
    empty = sum(1 for t in texts if not t.strip())
    if empty == len(texts):
        raise PeftbenchError(f"every text of the {split} split is empty; check data.text_column")
    if empty:
        warnings.append(f"{split}: {empty} empty or whitespace-only texts")
    duplicates = len(texts) - len(set(texts))
    if duplicates:
        warnings.append(f"{split}: {duplicates} duplicate texts")
    return warnings


def check_declared_labels(train: RawSplit, test: RawSplit, data: DataConfig) -> None:
    """Integer labels must lie in 0..num_labels-1 when data.num_labels is given."""
    if data.num_labels is None:
        return
    for name, split in (("train", train), ("test", test)):
        outside = sorted(
            {v for v in split.labels if isinstance(v, int) and not 0 <= v < data.num_labels}
        )
        if outside:
            raise PeftbenchError(
                f"{name} split: labels {outside[:10]} lie outside the declared classes "
                f"0..{data.num_labels - 1} (data.num_labels={data.num_labels}); fix "
                "data.num_labels or the data"
            )


def drop_duplicates(train: RawSplit, test: RawSplit) -> tuple[RawSplit, RawSplit, list[str]]:
    """Keep the first copy of each text in each split, and drop test texts seen in train."""

    def unique(split: RawSplit, exclude: set[str]) -> RawSplit:
        seen = set(exclude)
        keep = [i for i, t in enumerate(split.texts) if not (t in seen or seen.add(t))]
        return RawSplit([split.texts[i] for i in keep], [split.labels[i] for i in keep])

    clean_train = unique(train, set())
    clean_test = unique(test, set(clean_train.texts))
    notes = [
        f"dropped {len(train.texts) - len(clean_train.texts)} duplicate train texts and "
        f"{len(test.texts) - len(clean_test.texts)} test texts duplicated or seen in train "
        "(data.drop_duplicates)"
    ]
    return clean_train, clean_test, notes


def check_splits(train: RawSplit, test: RawSplit) -> list[str]:
    """Warnings about the whole splits: empty texts, duplicates, train/test overlap."""
    warnings = check_texts(train.texts, "train") + check_texts(test.texts, "test")
    overlap = len(set(train.texts) & set(test.texts))
    if overlap:
        warnings.append(
            f"{overlap} test texts also appear in train (set data.drop_duplicates: true to "
            "drop them)"
        )
    return warnings


# ---------------------------------------------------------------------------------------------
# Tokenisation and its cache


def _tokenize(tokenizer: Any, texts: list[str], max_length: int, split: str) -> list[list[int]]:
    ids: list[list[int]] = []
    with tqdm(total=len(texts), desc=f"tokenising {split}", unit="text") as progress:
        for start in range(0, len(texts), TOKENIZE_CHUNK):
            chunk = texts[start : start + TOKENIZE_CHUNK]
            ids.extend(tokenizer(chunk, truncation=True, max_length=max_length)["input_ids"])
            progress.update(len(chunk))
    return ids


def prepare_data(
    data: DataConfig, tokenizer: Any, tokenizer_id: str, max_length: int, cache_dir: Path
) -> tuple[PreparedData, Path]:
    """Read, subset, check and tokenise both splits; reuse the cached tokens when nothing changed.

    Returns the data and its cache file, from which each run's worker process loads it.
    """
    cache_key = stable_hash(
        {"data": data, "tokenizer": tokenizer_id, "max_length": max_length, "v": 1}
    )
    cache_file = cache_dir / f"tokens-{cache_key[:16]}.pt"
    if cache_file.exists():
        try:
            return load_prepared(cache_file), cache_file
        except Exception:  # a corrupt cache is rebuilt, never trusted
            cache_file.unlink(missing_ok=True)

    train_raw, declared = read_split(data, data.train_split)
    test_raw, _ = read_split(data, data.test_split)
    check_declared_labels(train_raw, test_raw, data)
    warnings = check_splits(train_raw, test_raw)
    if data.drop_duplicates:
        train_raw, test_raw, notes = drop_duplicates(train_raw, test_raw)
        warnings += notes
    label_names, to_id = label_vocabulary(train_raw, test_raw, declared)
    if len(label_names) < 2:
        raise PeftbenchError(
            f"column {data.label_column!r} holds a single class ({label_names}); "
            "classification needs at least two"
        )
    if data.num_labels is not None and data.num_labels != len(label_names):
        raise PeftbenchError(
            f"data.num_labels is {data.num_labels} but column {data.label_column!r} holds "
            f"{len(label_names)} classes ({', '.join(label_names)}); fix data.num_labels or "
            "set it to null"
        )
    splits = {}
    balance: dict[str, dict[str, int]] = {}
    for name, raw, size in (
        ("train", train_raw, data.train_size),
        ("test", test_raw, data.test_size),
    ):
        label_ids = [to_id[v] for v in raw.labels]
        where = f"data.{name}_size"
        chosen = stratified_subset(label_ids, size, data.subset_seed, where)
        texts = [raw.texts[i] for i in chosen]
        labels = [label_ids[i] for i in chosen]
        counts = Counter(labels)
        balance[name] = {label_names[k]: counts.get(k, 0) for k in range(len(label_names))}
        missing = [label_names[k] for k in range(len(label_names)) if counts.get(k, 0) == 0]
        if missing and name == "train":
            raise PeftbenchError(
                f"the train subset has no examples of class(es) {', '.join(missing)}: the "
                f"model could never learn them; fix: a larger data.train_size or other data"
            )
        if missing:
            warnings.append(f"{name}: no examples of class(es) {', '.join(missing)}")
        input_ids = _tokenize(tokenizer, texts, max_length, name)
        splits[name] = TokenizedSplit(input_ids, labels, list(range(len(labels))))
        splits[name + "_texts"] = texts
    overlap = len(set(splits["train_texts"]) & set(splits["test_texts"]))
    if overlap:
        warnings.append(f"subsets: {overlap} test texts also appear in the train subset")

    truncated = sum(len(ids) >= max_length for ids in splits["train"].input_ids)
    info = {
        "source": str(resolve_local_copy(data) or f"hub:{data.dataset}"),
        "num_labels": len(label_names),
        "label_names": label_names,
        "train_size": len(splits["train"]),
        "test_size": len(splits["test"]),
        "label_balance": balance,
        "mean_train_tokens": sum(map(len, splits["train"].input_ids)) / len(splits["train"]),
        "train_truncated_fraction": truncated / len(splits["train"]),
        "warnings": warnings,
    }
    prepared = PreparedData(
        splits["train"], splits["test"], int(tokenizer.pad_token_id or 0), label_names, info
    )
    save_prepared(prepared, cache_file)
    return prepared, cache_file


def save_prepared(prepared: PreparedData, cache_file: Path) -> None:
    """Write prepared data for the workers (temporary file, then rename)."""
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache_file.with_suffix(".tmp")
    torch.save(_to_cache(prepared), tmp)
    tmp.replace(cache_file)


def carve_validation(prepared: PreparedData, size: float, seed: int) -> PreparedData:
    """Split a stratified validation set off the training subset, for hyperparameter search.

    The result trains on the rest of the training subset and evaluates on the validation
    set in place of the test split, which it does not contain at all: a search cannot see
    the test set. `size` is a fraction of the training subset (< 1) or a count.
    """
    train = prepared.train
    count = round(size * len(train)) if size < 1 else int(size)
    chosen = set(stratified_subset(train.labels, count, seed, "data.validation_size"))
    rest = [i for i in range(len(train)) if i not in chosen]
    held = sorted(chosen)

    names = prepared.label_names
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


def _to_cache(prepared: PreparedData) -> dict:
    return {
        "train": vars(prepared.train),
        "test": vars(prepared.test),
        "pad_token_id": prepared.pad_token_id,
        "label_names": prepared.label_names,
        "info": json.dumps(prepared.info),
    }


def _from_cache(blob: dict) -> PreparedData:
    return PreparedData(
        TokenizedSplit(**blob["train"]),
        TokenizedSplit(**blob["test"]),
        blob["pad_token_id"],
        blob["label_names"],
        json.loads(blob["info"]),
    )


def load_prepared(cache_file: Path) -> PreparedData:
    """Prepared data from the cache file that prepare_data wrote."""
    return _from_cache(torch.load(cache_file, weights_only=True))


# ---------------------------------------------------------------------------------------------
# Batching


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


def collate(
    split: TokenizedSplit, indices: list[int], pad_token_id: int, pad_to: int | None
) -> dict[str, torch.Tensor]:
    """Pad one batch to its longest example, or to `pad_to` when given."""
    sequences = [split.input_ids[i] for i in indices]
    width = pad_to or max(len(s) for s in sequences)
    input_ids = torch.full((len(sequences), width), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, sequence in enumerate(sequences):
        input_ids[row, : len(sequence)] = torch.tensor(sequence, dtype=torch.long)
        attention_mask[row, : len(sequence)] = 1
    labels = torch.tensor([split.labels[i] for i in indices], dtype=torch.long)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
