"""Data sources, stratified subsets, checks, the token cache and padding."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import synthetic_reviews, write_dataset

from peftbench.config import DataConfig, ModelConfig
from peftbench.data import (
    DATA_DIR_ENV,
    batch_order,
    collate,
    prepare_data,
    read_split,
    stratified_subset,
)
from peftbench.errors import PeftbenchError
from peftbench.models import load_model, load_tokenizer


@pytest.fixture(scope="module")
def tokenizer(tiny_roberta: Path):
    return load_tokenizer(ModelConfig(name=str(tiny_roberta)))


def _prepare(data: DataConfig, tokenizer, tmp_path: Path, max_length: int = 64):
    return prepare_data(data, tokenizer, "tiny", max_length, tmp_path / "cache")


def test_stratified_subset_keeps_class_proportions_and_is_seeded() -> None:
    labels = [0] * 900 + [1] * 100  # sorted by label, as the IMDb files are
    subset = stratified_subset(labels, 200, seed=0, where="data.train_size")
    assert len(subset) == len(set(subset)) == 200
    assert Counter(labels[i] for i in subset) == {0: 180, 1: 20}
    assert subset == stratified_subset(labels, 200, seed=0, where="data.train_size")
    assert subset != stratified_subset(labels, 200, seed=1, where="data.train_size")


def test_subset_larger_than_split_is_a_clear_error() -> None:
    with pytest.raises(PeftbenchError, match=r"data.train_size=50 but the split has only 10 rows"):
        stratified_subset([0, 1] * 5, 50, seed=0, where="data.train_size")


@pytest.mark.parametrize("fmt", ["parquet", "csv", "jsonl"])
def test_local_formats(tmp_path: Path, tokenizer, fmt: str) -> None:
    directory = write_dataset(tmp_path / fmt, train=40, test=20, fmt=fmt)
    data, cache = _prepare(DataConfig(dataset=str(directory), train_size=20), tokenizer, tmp_path)
    assert len(data.train) == 20 and len(data.test) == 20
    assert data.info["label_balance"]["train"] == {"0": 10, "1": 10}
    assert data.num_labels == 2
    assert cache.exists()


def test_aclimdb_folder(tmp_path: Path, tokenizer) -> None:
    root = tmp_path / "aclImdb"
    texts, labels = synthetic_reviews(24, seed=5)
    for split in ("train", "test"):
        for i, (text, label) in enumerate(zip(texts, labels, strict=True)):
            folder = root / split / ("pos" if label else "neg")
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{i}_{7 if label else 2}.txt").write_text(f"{split} {text}")
    data, _ = _prepare(DataConfig(dataset=str(root)), tokenizer, tmp_path)
    assert data.label_names == ["neg", "pos"]
    assert data.info["label_balance"]["test"] == {"neg": 12, "pos": 12}


def test_string_labels_and_custom_columns_three_classes(tmp_path: Path, tokenizer) -> None:
    directory = tmp_path / "topics"
    directory.mkdir()
    rows = [
        {"body": f"text number {i}", "topic": ["sport", "news", "art"][i % 3]} for i in range(30)
    ]
    for split in ("train", "test"):
        pd.DataFrame(rows).to_csv(directory / f"{split}.csv", index=False)
    config = DataConfig(dataset=str(directory), text_column="body", label_column="topic")
    data, _ = _prepare(config, tokenizer, tmp_path)
    assert data.label_names == ["art", "news", "sport"]
    assert sorted(set(data.train.labels)) == [0, 1, 2]
    assert not any("duplicate texts" in w for w in data.info["warnings"])
    assert any("test texts also appear in train" in w for w in data.info["warnings"])


def test_missing_column_names_the_columns_and_the_field(tiny_dataset: Path) -> None:
    with pytest.raises(PeftbenchError) as info:
        read_split(DataConfig(dataset=str(tiny_dataset), text_column="review"), "train")
    message = str(info.value)
    assert "no column 'review' (data.text_column)" in message
    assert "text, label" in message


def test_missing_split_is_a_clear_error(tiny_dataset: Path) -> None:
    with pytest.raises(PeftbenchError, match="no 'validation' split"):
        read_split(DataConfig(dataset=str(tiny_dataset)), "validation")


def test_hub_dataset_offline_fails_with_the_fix() -> None:
    with pytest.raises(PeftbenchError, match=DATA_DIR_ENV):
        read_split(DataConfig(dataset="no-such-user/no-such-dataset"), "train")


def test_data_dir_env_points_at_an_offline_copy(
    tiny_dataset: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(DATA_DIR_ENV, str(tiny_dataset.parent))
    split, _ = read_split(DataConfig(dataset=f"someone/{tiny_dataset.name}"), "test")
    assert len(split.texts) == 64


def test_token_cache_is_reused_and_invalidated(tiny_dataset: Path, tokenizer, tmp_path: Path):
    config = DataConfig(dataset=str(tiny_dataset), train_size=32, test_size=16)
    _, first = _prepare(config, tokenizer, tmp_path)
    stamp = first.stat().st_mtime_ns
    _, again = _prepare(config, tokenizer, tmp_path)
    assert again == first and again.stat().st_mtime_ns == stamp  # reused, not rewritten
    _, longer = _prepare(config, tokenizer, tmp_path, max_length=32)
    _, bigger = _prepare(DataConfig(dataset=str(tiny_dataset), train_size=48), tokenizer, tmp_path)
    assert len({first, longer, bigger}) == 3


def test_an_edited_data_file_is_read_afresh_not_from_the_token_cache(tokenizer, tmp_path: Path):
    """Same config, same cache folder, the data fixed in between: the run must see the fix."""
    directory = write_dataset(tmp_path / "data", train=40, test=20, fmt="csv")
    config = DataConfig(dataset=str(directory))
    before, first = _prepare(config, tokenizer, tmp_path)
    test_file = directory / "test.csv"
    flipped = test_file.read_text().replace(",1\n", ",x\n").replace(",0\n", ",1\n")
    test_file.write_text(flipped.replace(",x\n", ",0\n"))  # every test label flipped
    after, second = _prepare(config, tokenizer, tmp_path)
    assert second != first
    assert after.test.labels == [1 - label for label in before.test.labels]


def test_dynamic_padding_gives_the_same_logits_as_max_length(
    tiny_roberta: Path, tiny_dataset: Path, tokenizer, tmp_path: Path
) -> None:
    data, _ = _prepare(DataConfig(dataset=str(tiny_dataset), test_size=16), tokenizer, tmp_path)
    model = load_model(ModelConfig(name=str(tiny_roberta)), 2, torch.device("cpu")).eval()
    indices = list(range(16))
    dynamic = collate(data.test, indices, data.pad_token_id, None)
    padded = collate(data.test, indices, data.pad_token_id, 64)
    assert dynamic["input_ids"].shape[1] < padded["input_ids"].shape[1] == 64
    with torch.no_grad():
        a = model(input_ids=dynamic["input_ids"], attention_mask=dynamic["attention_mask"]).logits
        b = model(input_ids=padded["input_ids"], attention_mask=padded["attention_mask"]).logits
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_batch_order_is_seeded_complete_and_groups_by_length() -> None:
    lengths = [(i * 37) % 101 for i in range(200)]
    grouped = batch_order(lengths, 10, seed=3, group_by_length=True)
    assert sorted(i for b in grouped for i in b) == list(range(200))
    assert grouped == batch_order(lengths, 10, seed=3, group_by_length=True)
    spread = sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in grouped)
    random_batches = batch_order(lengths, 10, seed=3, group_by_length=False)
    spread_random = sum(
        max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in random_batches
    )
    assert spread < spread_random / 3


def _write_rows(directory: Path, train: list[dict], test: list[dict]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(train).to_parquet(directory / "train.parquet")
    pd.DataFrame(test).to_parquet(directory / "test.parquet")
    return directory


def _rows(texts: list[str], labels: list[int]) -> list[dict]:
    return [{"text": t, "label": y} for t, y in zip(texts, labels, strict=True)]


def test_data_checks_find_empty_duplicate_and_overlapping_texts(tmp_path: Path, tokenizer):
    texts, labels = synthetic_reviews(40, seed=9)
    train = _rows(texts[:30] + ["   ", texts[0], texts[1]], labels[:30] + [0, labels[0], labels[1]])
    test = _rows(texts[30:] + texts[2:5], labels[30:] + labels[2:5])  # 3 seen in train
    directory = _write_rows(tmp_path / "crafted", train, test)
    with pytest.raises(
        PeftbenchError, match=r"1 row\(s\) with an empty text .*train.parquet row 31"
    ):
        _prepare(DataConfig(dataset=str(directory)), tokenizer, tmp_path)
    data, _ = _prepare(DataConfig(dataset=str(directory), drop_invalid=True), tokenizer, tmp_path)
    warnings = " | ".join(data.info["warnings"])
    assert "train: dropped 1 invalid row(s) (data.drop_invalid)" in warnings
    assert "train: 2 duplicate texts" in warnings
    assert "3 test texts also appear in train" in warnings

    cleaned, _ = _prepare(
        DataConfig(dataset=str(directory), drop_duplicates=True, drop_invalid=True),
        tokenizer,
        tmp_path,
    )
    assert cleaned.info["train_size"] == 30  # 33 rows less the empty one and the 2 duplicates
    assert cleaned.info["test_size"] == 10  # 13 rows less the 3 seen in train
    assert any(
        "dropped 2 duplicate train texts and 3 test texts" in w for w in cleaned.info["warnings"]
    )


def test_more_classes_than_num_labels_is_an_error(tmp_path: Path, tokenizer) -> None:
    texts, labels = synthetic_reviews(20, seed=3)
    directory = _write_rows(tmp_path / "bad", _rows(texts, labels[:-1] + [5]), _rows(texts, labels))
    with pytest.raises(PeftbenchError, match=r"holds 3 classes \(0, 1, 5\), more than data.num"):
        _prepare(DataConfig(dataset=str(directory), num_labels=2), tokenizer, tmp_path)


def test_a_class_missing_from_a_split(tmp_path: Path, tokenizer) -> None:
    texts, labels = synthetic_reviews(20, seed=4)
    only_negative = [0] * len(texts)
    directory = _write_rows(
        tmp_path / "onesided", _rows(texts, labels), _rows(texts, only_negative)
    )
    data, _ = _prepare(DataConfig(dataset=str(directory)), tokenizer, tmp_path)
    assert "test: no examples of class(es) 1" in data.info["warnings"]
    train_missing = _write_rows(
        tmp_path / "trainmissing", _rows(texts, only_negative), _rows(texts, labels)
    )
    with pytest.raises(PeftbenchError, match="train subset has no examples of class"):
        _prepare(DataConfig(dataset=str(train_missing)), tokenizer, tmp_path)


def test_all_empty_texts_are_an_error(tmp_path: Path, tokenizer) -> None:
    directory = _write_rows(
        tmp_path / "empty", _rows([""] * 4, [0, 1, 0, 1]), _rows(["a", "b"], [0, 1])
    )
    with pytest.raises(PeftbenchError, match=r"train split: 4 row\(s\) with an empty text"):
        _prepare(DataConfig(dataset=str(directory)), tokenizer, tmp_path)


def test_a_subset_leaving_too_few_rows_to_stratify_is_drawn_unstratified() -> None:
    labels = ["a"] * 5 + ["b"] * 5
    subset = stratified_subset(labels, 9, seed=0, where="data.train_size")  # 1 row left out
    assert len(set(subset)) == 9
    assert subset == stratified_subset(labels, 9, seed=0, where="data.train_size")
