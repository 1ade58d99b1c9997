"""Datasets in, tokenised train / test splits out.

sources.py reads a split's columns (Hub, local Parquet / CSV / TSV / JSONL, aclImdb); checks.py
catches invalid rows and duplicates; labels.py maps labels of any kind to class ids; splits.py
draws seeded, stratified subsets and carved splits; prepare.py ties them together and caches
the tokens; batching.py orders and pads batches.
"""

from peftbench.data.batching import batch_order, collate
from peftbench.data.labels import original_label_values
from peftbench.data.prepare import (
    PreparedData,
    TokenizedSplit,
    carve_validation,
    load_prepared,
    prepare_data,
    save_prepared,
)
from peftbench.data.sources import DATA_DIR_ENV, RawSplit, read_split, resolve_local_copy
from peftbench.data.splits import stratified_subset

__all__ = [
    "DATA_DIR_ENV",
    "PreparedData",
    "RawSplit",
    "TokenizedSplit",
    "batch_order",
    "carve_validation",
    "collate",
    "load_prepared",
    "original_label_values",
    "prepare_data",
    "read_split",
    "resolve_local_copy",
    "save_prepared",
    "stratified_subset",
]
