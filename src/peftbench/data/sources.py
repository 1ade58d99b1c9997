"""Reading a split's columns from where the data lives: the Hub, local files, an aclImdb folder.

Local files are Parquet, CSV, TSV or JSONL, one or more per split (named after the split, or
in a folder named after it), decoded with data.encoding. An offline copy of a Hub dataset is
found through data.local_path or $PEFTBENCH_DATA_DIR/<dataset>.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from peftbench.config import DataConfig
from peftbench.errors import PeftbenchError

DATA_DIR_ENV = "PEFTBENCH_DATA_DIR"
FILE_READERS = {
    ".parquet": "parquet",
    ".csv": "csv",
    ".tsv": "tsv",
    ".jsonl": "jsonl",
    ".json": "jsonl",
}


@dataclass
class RawSplit:
    """One split as read: texts (joined from the text columns), pair texts, labels as stored."""

    texts: list[str | None]
    labels: list[Any]
    pairs: list[str | None] | None = None  # the second text of pair tasks
    # Where the rows came from, in order: (file or source name, number of rows), so that a
    # problem can be reported as "train.csv row 12".
    parts: tuple[tuple[str, int], ...] = ()
    # Each row's position among the rows as read, once some were dropped, carved off or
    # reordered (None: the rows as read).
    positions: list[int] | None = None

    def locate(self, index: int) -> str:
        """'<file> row <n>' (n counts data rows from 1) for the row at `index` of the split."""
        position = index if self.positions is None else self.positions[index]
        start = 0
        for name, count in self.parts:
            if position < start + count:
                return f"{name} row {position - start + 1}"
            start += count
        return f"row {position + 1}"

    def select(self, keep: list[int]) -> RawSplit:
        pairs = None if self.pairs is None else [self.pairs[i] for i in keep]
        positions = list(keep) if self.positions is None else [self.positions[i] for i in keep]
        return RawSplit(
            [self.texts[i] for i in keep],
            [self.labels[i] for i in keep],
            pairs,
            self.parts,
            positions,
        )


def text_columns(data: DataConfig) -> list[str]:
    """The columns joined into the (first) text, in order."""
    return [data.text_column] if isinstance(data.text_column, str) else list(data.text_column)


def resolve_local_copy(data: DataConfig) -> Path | None:
    """The local directory (or file) to read for `data`, or None to use the Hub. A copy laid
    out as the Hub's dataset repositories are, one folder per configuration (glue/rte/,
    glue/mrpc/), is read in the folder of data.dataset_config."""
    path = _local_copy(data)
    if path is not None and data.dataset_config and (path / data.dataset_config).is_dir():
        return path / data.dataset_config
    return path


def _local_copy(data: DataConfig) -> Path | None:
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


def describe_source(data: DataConfig) -> str:
    """Where the data came from, for the record: a path under $PEFTBENCH_DATA_DIR is written
    relative to it (records name no machine's folders), a Hub dataset as hub:<id>."""
    local = resolve_local_copy(data)
    if local is None:
        config = f" ({data.dataset_config})" if data.dataset_config else ""
        return f"hub:{data.dataset}{config}"
    root = os.environ.get(DATA_DIR_ENV)
    if root:
        try:
            return f"${DATA_DIR_ENV}/{local.resolve().relative_to(Path(root).resolve())}"
        except ValueError:
            pass
    return str(local)


def source_fingerprint(data: DataConfig) -> Any:
    """What the data is now, for the token cache's key: every data file of a local copy (the
    kinds read, and aclImdb's .txt reviews) by name and content hash, so an edited, replaced,
    added or removed file is read afresh; or a Hub dataset's id."""
    local = resolve_local_copy(data)
    if local is None:
        return describe_source(data)
    kinds = {*FILE_READERS, ".txt"}
    files = (
        [local]
        if local.is_file()
        else sorted(p for p in local.rglob("*") if p.suffix in kinds and p.is_file())
    )
    return [(str(f.relative_to(local)) if f != local else f.name, _content_hash(f)) for f in files]


def _content_hash(file: Path) -> str:
    digest = hashlib.blake2b(digest_size=16)
    with file.open("rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _is_aclimdb(path: Path) -> bool:
    return (path / "train" / "pos").is_dir() and (path / "train" / "neg").is_dir()


def _read_aclimdb(path: Path, split: str) -> RawSplit:
    texts: list[str | None] = []
    labels: list[str] = []
    for label in ("neg", "pos"):  # the original distribution's folders; sorted = ids 0, 1
        folder = path / split / label
        if not folder.is_dir():
            raise PeftbenchError(f"aclImdb folder {path} has no {split}/{label} directory")
        for review in sorted(folder.glob("*.txt")):
            texts.append(review.read_text(encoding="utf-8"))
            labels.append(label)
    return RawSplit(texts, labels, parts=((f"{path.name}/{split}", len(labels)),))


def split_files(path: Path, split: str) -> list[Path]:
    """The data files of `split` under `path`: named after it (train.csv), its shards
    (train-00000-of-00002.parquet, train_1.csv), or in a folder named after it. Another split
    whose name starts with it (validation_matched for validation) is not it."""
    shard = re.compile(rf"{re.escape(split)}(-.*|_\d+)")
    files = []
    for candidate in sorted(path.rglob("*")):
        if candidate.suffix not in FILE_READERS or not candidate.is_file():
            continue
        if candidate.parent.name == split or candidate.stem == split:
            files.append(candidate)
        elif shard.fullmatch(candidate.stem):
            files.append(candidate)
    return files


def _decode(file: Path, encoding: str) -> str:
    """The file's text; one clear error naming the byte offset when it is not in `encoding`."""
    raw = file.read_bytes()
    try:
        return raw.decode(encoding)
    except LookupError:
        raise PeftbenchError(
            f"data.encoding: {encoding!r} is not an encoding Python knows; fix: set data.encoding "
            "to e.g. utf-8, latin-1 or cp1252"
        ) from None
    except UnicodeDecodeError as exc:
        snippet = raw[max(0, exc.start - 20) : exc.start + 20]
        raise PeftbenchError(
            f"{file}: byte {exc.start} (0x{raw[exc.start]:02x}, near {snippet!r}) is not valid "
            f"{encoding}; fix: set data.encoding to the file's encoding (latin-1 and cp1252 are "
            "common for Western European text)"
        ) from None


def _read_file(file: Path, data: DataConfig) -> Any:
    """One data file as a table; a file that cannot be read is one error naming it."""
    import pandas as pd

    kind = FILE_READERS[file.suffix]
    try:
        if kind == "parquet":
            return pd.read_parquet(file)
        text = _decode(file, data.encoding).removeprefix("\ufeff")  # a byte order mark
        if kind == "jsonl":
            # A .json file may hold one array of records instead of a record per line; values
            # are read as written ("007" stays text, not the number 7).
            lines = not text.lstrip().startswith("[")
            return pd.read_json(io.StringIO(text), orient="records", lines=lines, dtype=False)
        return _read_delimited(file, text, kind, data)
    except PeftbenchError:
        raise
    except Exception as exc:  # noqa: BLE001 - pandas/pyarrow raise many types for a bad file
        hint = (
            ", or data.column_names for a file without a header row"
            if kind in ("csv", "tsv")
            else ""
        )
        raise PeftbenchError(
            f"{file} could not be read as {kind.upper()} ({type(exc).__name__}: "
            f"{str(exc)[:200]}); fix the file{hint}"
        ) from None


def _read_delimited(file: Path, text: str, kind: str, data: DataConfig) -> Any:
    import pandas as pd

    options: dict[str, Any] = {"keep_default_na": False, "dtype": object}
    if data.column_names is not None:
        options["header"] = None
    if kind == "tsv":
        # GLUE-style TSVs hold unbalanced quote characters in their texts: no quoting.
        options.update(sep="\t", quoting=csv.QUOTE_NONE)
    table = pd.read_csv(io.StringIO(text), **options)
    names = data.column_names
    if names is None:
        return table
    if table.shape[1] != len(names):
        raise PeftbenchError(
            f"{file} has {table.shape[1]} columns but data.column_names names {len(names)} "
            f"({', '.join(names)}); fix: name every column of the file, in order"
        )
    if len(table) and [str(v) for v in table.iloc[0]] == list(names):
        raise PeftbenchError(
            f"{file} starts with a header row ({', '.join(names)}) though data.column_names "
            "is set, which is for files without one; fix: remove data.column_names"
        )
    table.columns = list(names)
    return table


def _as_column(values: list[Any]) -> list[Any]:
    """Column values with pandas' missing markers (NaN, NA, None) as None."""
    import pandas as pd

    return [
        None if v is None or (not isinstance(v, list | tuple) and pd.isna(v)) else v for v in values
    ]


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


def _wanted_columns(data: DataConfig) -> set[str]:
    """The columns a config reads: text(s), label and pair text; others are never touched."""
    return set(text_columns(data)) | {data.label_column, data.text_pair_column} - {None}


def check_columns(table_columns: list[str], data: DataConfig, where: str) -> None:
    """Every configured column exists, or one error listing the columns there are."""
    wanted = [("text_column", c) for c in text_columns(data)] + [
        ("label_column", data.label_column)
    ]
    if data.text_pair_column:
        wanted.append(("text_pair_column", data.text_pair_column))
    for field_name, column in wanted:
        if column not in table_columns:
            hint = (
                " (a file without a header row needs data.column_names)"
                if data.column_names is None
                else ""
            )
            raise PeftbenchError(
                f"{where} has no column {column!r} (data.{field_name}); its columns are: "
                f"{', '.join(map(str, table_columns))}. Fix: set data.{field_name}{hint}"
            )


def _join(columns: list[list[Any]], separator: str) -> list[str | None]:
    """Row-wise join of text columns; a row whose columns are all missing stays None."""
    joined: list[str | None] = []
    for values in zip(*columns, strict=True):
        present = [str(v) for v in values if v is not None and str(v).strip()]
        joined.append(separator.join(present) if present else None)
    return joined


def _raw_split(columns: dict[str, list[Any]], data: DataConfig, parts: tuple) -> RawSplit:
    texts = _join([columns[c] for c in text_columns(data)], data.text_separator)
    pairs = None
    if data.text_pair_column:
        pairs = _join([columns[data.text_pair_column]], data.text_separator)
    return RawSplit(texts, columns[data.label_column], pairs, parts)


def _read_local(path: Path, data: DataConfig, split: str) -> tuple[RawSplit, list[str] | None]:
    if _is_aclimdb(path):
        return _read_aclimdb(path, split), ["neg", "pos"]
    if path.is_file() and split != data.train_split:
        raise PeftbenchError(
            f"{path} is one file, so it holds the training split only, not the {split!r} split "
            "(it would test the model on the rows it trains on); fix: set data.test_split: null "
            "to carve a test split from it (data.test_fraction), or give a folder with a "
            f"{data.train_split} and a test file"
        )
    files = [path] if path.is_file() else split_files(path, split)
    if path.is_dir():
        _check_one_folder(files, path, split)
    if not files:
        raise PeftbenchError(
            f"no {split!r} split in {path}: expected files named {split}.parquet / .csv / .tsv "
            f"/ .jsonl, {split}-*.parquet, or a {split}/ folder (data.train_split / "
            "data.test_split name the splits; data.test_split: null carves a test split from "
            "the training split)"
        )
    import pandas as pd

    tables = [_read_file(file, data) for file in files]
    for file, table in zip(files, tables, strict=True):
        check_columns(list(table.columns), data, f"{file}")
    table = pd.concat(tables, ignore_index=True)
    parts = tuple((f.name, len(t)) for f, t in zip(files, tables, strict=True))
    columns = {name: _as_column(table[name].tolist()) for name in _wanted_columns(data)}
    return _raw_split(columns, data, parts), _parquet_label_names(files, data.label_column)


def _check_one_folder(files: list[Path], path: Path, split: str) -> None:
    """A split's files all come from one folder: files of several (one per configuration of a
    dataset, as glue/rte/ and glue/mrpc/) would be read as one split without a word."""
    folders = sorted(
        {
            str((f.parent.parent if f.parent.name == split else f.parent).relative_to(path))
            for f in files
        }
    )
    if len(folders) > 1:
        raise PeftbenchError(
            f"the {split!r} split of {path} has files in {len(folders)} folders "
            f"({', '.join(folders)}): a copy with one folder per configuration; fix: set "
            "data.dataset_config to the folder to read, or data.local_path to it"
        )


def _read_hub(data: DataConfig, split: str) -> tuple[RawSplit, list[str] | None]:
    import datasets

    try:
        dataset = datasets.load_dataset(data.dataset, data.dataset_config, split=split)
    except Exception as exc:  # datasets raises many types for "not reachable / not found"
        raise PeftbenchError(
            f"dataset {data.dataset!r} (split {split!r}) could not be loaded from the Hub or its "
            f"cache ({type(exc).__name__}: {str(exc)[:200]}). Fix: set data.local_path or "
            f"${DATA_DIR_ENV} to a local copy, or check the dataset id and split names"
        ) from exc
    where = f"dataset {data.dataset!r} split {split!r}"
    check_columns(dataset.column_names, data, where)
    feature = dataset.features[data.label_column]
    names = list(feature.names) if hasattr(feature, "names") else None
    columns = {name: _as_column(list(dataset[name])) for name in _wanted_columns(data)}
    return _raw_split(columns, data, ((f"{data.dataset}:{split}", len(dataset)),)), names


def read_split(data: DataConfig, split: str) -> tuple[RawSplit, list[str] | None]:
    """One split's texts and labels, and class names where the source declares them."""
    local = resolve_local_copy(data)
    return _read_local(local, data, split) if local else _read_hub(data, split)


def has_split(data: DataConfig, split: str) -> bool:
    """Whether the source holds a split called `split` (without reading it)."""
    local = resolve_local_copy(data)
    if local is not None:
        if _is_aclimdb(local):
            return (local / split / "pos").is_dir()
        return local.is_dir() and bool(split_files(local, split))
    try:
        import datasets

        return split in datasets.get_dataset_split_names(data.dataset, data.dataset_config)
    except Exception:  # unreachable Hub: the train/test reads report it
        return False
