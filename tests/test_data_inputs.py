"""Any text-classification data: several text columns, sentence pairs, labels of any kind, messy
files (empty cells, other encodings, TSV, no header), carved splits; bad data through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from conftest import synthetic_reviews, tiny_config, write_config

from peftbench.cli import main
from peftbench.config import DataConfig, ModelConfig
from peftbench.data import carve_validation, original_label_values, prepare_data, read_split
from peftbench.data.sources import split_files
from peftbench.errors import PeftbenchError
from peftbench.models import load_tokenizer


@pytest.fixture(scope="module")
def bert_tokenizer(tiny_bert: Path):
    return load_tokenizer(ModelConfig(name=str(tiny_bert)))


def _prepare(data: DataConfig, tokenizer, tmp_path: Path, max_length: int = 64):
    return prepare_data(data, tokenizer, "tiny", max_length, tmp_path / "cache")[0]


def _write_csv(directory: Path, frames: dict[str, pd.DataFrame], **options) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for split, frame in frames.items():
        frame.to_csv(directory / f"{split}.csv", index=False, **options)
    return directory


def _news(count: int, seed: int, labels: list) -> pd.DataFrame:
    """A news-topic table: label, title, description; the label cycles through `labels`."""
    texts, _ = synthetic_reviews(2 * count, seed)
    return pd.DataFrame(
        {
            "label": [labels[i % len(labels)] for i in range(count)],
            "title": texts[:count],
            "description": texts[count:],
        }
    )


def test_several_text_columns_are_joined_before_tokenising(tmp_path: Path, bert_tokenizer):
    frame = _news(12, seed=1, labels=[1, 2, 3, 4])
    directory = _write_csv(tmp_path / "news", {"train": frame, "test": frame})
    data = DataConfig(
        dataset=str(directory), text_column=["title", "description"], text_separator=" | "
    )
    prepared = _prepare(data, bert_tokenizer, tmp_path)
    # Splits are shuffled, so compare the sets of token ids.
    expected = [
        bert_tokenizer(f"{t} | {d}", truncation=True, max_length=64)["input_ids"]
        for t, d in zip(frame.title, frame.description, strict=True)
    ]
    assert sorted(prepared.test.input_ids) == sorted(expected)
    assert prepared.test.token_type_ids is None
    assert prepared.info["text_columns"] == ["title", "description"]


def test_a_pair_task_is_tokenised_as_a_pair_with_segment_ids(tmp_path: Path, bert_tokenizer):
    first, _ = synthetic_reviews(10, seed=2)
    second, _ = synthetic_reviews(10, seed=3)
    frame = pd.DataFrame(
        {
            "sentence1": first,
            "sentence2": second,
            "label": ["entailment", "not_entailment"] * 5,
        }
    )
    directory = tmp_path / "pairs"
    directory.mkdir()
    for split in ("train", "dev"):
        frame.to_csv(directory / f"{split}.tsv", sep="\t", index=False)
    data = DataConfig(
        dataset=str(directory),
        text_column="sentence1",
        text_pair_column="sentence2",
        test_split="dev",
    )
    prepared = _prepare(data, bert_tokenizer, tmp_path, max_length=24)
    encoded = bert_tokenizer(first, second, truncation="longest_first", max_length=24)
    by_ids = dict(
        zip(map(tuple, prepared.test.input_ids), prepared.test.token_type_ids, strict=True)
    )
    for ids, types in zip(encoded["input_ids"], encoded["token_type_ids"], strict=True):
        assert by_ids[tuple(ids)] == types
        assert len(ids) <= 24 and 1 in types  # both texts kept, the longer one cut first
    assert prepared.label_names == ["entailment", "not_entailment"]
    assert prepared.info["text_pair_column"] == "sentence2"


@pytest.mark.parametrize(
    ("values", "names", "fmt"),
    [
        ([1, 2, 3, 4], ["1", "2", "3", "4"], "csv"),  # any integers: 1..4 -> ids 0..3
        ([10, 2, 7], ["2", "7", "10"], "csv"),  # sorted as numbers, not as text
        (["sports", "world", "business"], ["business", "sports", "world"], "csv"),
        ([True, False], ["False", "True"], "jsonl"),
        ([0.0, 1.0, 2.0], ["0", "1", "2"], "parquet"),  # whole floats are classes
    ],
)
def test_every_label_kind_maps_to_ids_and_back(
    tmp_path: Path, bert_tokenizer, values: list, names: list[str], fmt: str
):
    frame = _news(12, seed=4, labels=values)[["label", "title"]].rename(columns={"title": "text"})
    directory = tmp_path / "labels"
    directory.mkdir()
    for split in ("train", "test"):
        if fmt == "csv":
            frame.to_csv(directory / f"{split}.csv", index=False)
        elif fmt == "jsonl":
            frame.to_json(directory / f"{split}.jsonl", orient="records", lines=True)
        else:
            frame.to_parquet(directory / f"{split}.parquet")
    prepared = _prepare(DataConfig(dataset=str(directory)), bert_tokenizer, tmp_path)
    assert prepared.label_names == names
    # Round trip: ids back to the values as the file holds them.
    by_text = dict(zip(frame.text, frame.label, strict=True))
    test_ids = prepared.test.input_ids
    fields = original_label_values(prepared.label_names, prepared.test.labels, [0] * len(test_ids))
    decoded = [bert_tokenizer.decode(ids, skip_special_tokens=True) for ids in test_ids]
    for text, gold in zip(decoded, fields["gold_values"], strict=True):
        original = by_text[text]
        assert gold == str(int(original) if isinstance(original, float) else original)
    assert set(prepared.info["label_mapping"]["values"]) == set(names)


def test_label_names_give_the_order_or_name_integer_ids(tmp_path: Path, bert_tokenizer):
    frame = _news(12, seed=5, labels=["neg", "pos", "neutral"])
    directory = _write_csv(tmp_path / "ordered", {"train": frame, "test": frame})
    ordered = DataConfig(
        dataset=str(directory), text_column="title", label_names=["neg", "neutral", "pos"]
    )
    assert _prepare(ordered, bert_tokenizer, tmp_path).label_names == ["neg", "neutral", "pos"]
    with pytest.raises(PeftbenchError, match="'pos' that data.label_names .* does not list"):
        _prepare(
            DataConfig(dataset=str(directory), text_column="title", label_names=["neg"]),
            bert_tokenizer,
            tmp_path,
        )
    ids = _write_csv(tmp_path / "ids", {s: _news(12, 6, [0, 1, 2]) for s in ("train", "test")})
    named = DataConfig(dataset=str(ids), text_column="title", label_names=["a", "b", "c"])
    prepared = _prepare(named, bert_tokenizer, tmp_path)
    assert prepared.label_names == ["a", "b", "c"]
    assert prepared.info["label_balance"]["train"] == {"a": 4, "b": 4, "c": 4}


def test_empty_labels_and_texts_are_named_or_dropped(tmp_path: Path, bert_tokenizer):
    frame = _news(100, seed=7, labels=[0, 1])
    frame.loc[[3, 40, 77], "label"] = None  # 3 of 100 labels empty
    frame.loc[[5], "title"] = "   "
    directory = _write_csv(tmp_path / "messy", {"train": frame, "test": _news(20, 8, [0, 1])})
    data = DataConfig(dataset=str(directory), text_column="title")
    with pytest.raises(PeftbenchError) as error:
        _prepare(data, bert_tokenizer, tmp_path)
    message = str(error.value)
    assert "3 row(s) with an empty label (column 'label'), first: train.csv row 4, " in message
    assert "train.csv row 41, train.csv row 78" in message
    assert "1 row(s) with an empty text (column 'title'), first: train.csv row 6" in message
    assert "data.drop_invalid: true" in message

    data = DataConfig(dataset=str(directory), text_column="title", drop_invalid=True)
    prepared = _prepare(data, bert_tokenizer, tmp_path)
    assert prepared.label_names == ["0", "1"]  # not '0.0', '1.0', 'nan'
    assert prepared.info["train_size"] == 96
    assert any("train: dropped 4 invalid row(s)" in w for w in prepared.info["warnings"])


def test_encodings_and_headerless_files(tmp_path: Path, bert_tokenizer):
    directory = tmp_path / "latin"
    directory.mkdir()
    rows = "".join(f"{i % 2},caf\xe9 cr\xe8me number {i}\n" for i in range(20))
    for split in ("train", "test"):
        (directory / f"{split}.csv").write_bytes(rows.encode("latin-1"))
    data = DataConfig(dataset=str(directory), column_names=["label", "text"])
    with pytest.raises(PeftbenchError) as error:
        _prepare(data, bert_tokenizer, tmp_path)
    message = str(error.value)
    assert "train.csv: byte 5 (0xe9" in message and "is not valid utf-8" in message
    assert "data.encoding" in message
    data = DataConfig(dataset=str(directory), column_names=["label", "text"], encoding="latin-1")
    prepared = _prepare(data, bert_tokenizer, tmp_path)
    assert prepared.info["train_size"] == 20 and prepared.label_names == ["0", "1"]
    with pytest.raises(PeftbenchError, match="data.encoding: 'klingon' is not an encoding"):
        _prepare(DataConfig(dataset=str(directory), encoding="klingon"), bert_tokenizer, tmp_path)


def test_single_split_gets_a_seeded_stratified_test_split(tmp_path: Path, bert_tokenizer):
    directory = _write_csv(tmp_path / "single", {"train": _news(100, 9, ["a", "b", "b", "b"])})
    data = DataConfig(dataset=str(directory), text_column="title", test_split=None)
    prepared = _prepare(data, bert_tokenizer, tmp_path)
    assert prepared.info["test_size"] == 20 and prepared.info["train_size"] == 80
    assert prepared.info["label_balance"]["test"] == {"a": 5, "b": 15}  # stratified
    assert any("test split carved from 'train'" in n for n in prepared.info["splits"])
    again = _prepare(data, bert_tokenizer, tmp_path / "again")
    assert again.test.input_ids == prepared.test.input_ids  # seeded
    assert not set(map(tuple, prepared.train.input_ids)) & set(map(tuple, prepared.test.input_ids))


def test_a_validation_split_of_the_source_serves_the_search(tmp_path: Path, bert_tokenizer):
    frames = {s: _news(30, seed, [0, 1]) for seed, s in enumerate(("train", "test", "validation"))}
    directory = _write_csv(tmp_path / "three", frames)
    prepared = _prepare(
        DataConfig(dataset=str(directory), text_column="title"), bert_tokenizer, tmp_path
    )
    search = carve_validation(prepared, 0.2, seed=0)
    assert len(search.train) == 30 and len(search.test) == 30
    assert search.info["evaluated_on"] == "the source's validation split"
    expected = {tuple(bert_tokenizer(t)["input_ids"]) for t in frames["validation"].title}
    assert set(map(tuple, search.test.input_ids)) == expected


def _cli_config(tmp_path: Path, tiny_bert: Path, directory: Path, **data: object) -> Path:
    config = tiny_config(tiny_bert, directory, tmp_path / "out")
    config["data"] = {"dataset": str(directory), **data}
    config["methods"] = {"lora": {"learning_rate": 5e-3}}
    config["training"]["epochs"] = 1
    return write_config(config, tmp_path / "c.yaml")


@pytest.mark.parametrize(
    ("case", "needles"),
    [
        ("empty_label", ["train.csv row 2", "empty label", "data.drop_invalid"]),
        ("latin1", ["train.csv: byte", "not valid utf-8", "data.encoding"]),
        ("no_header", ["has no column 'text'", "data.column_names"]),
        ("five_classes", ["holds 5 classes", "more than data.num_labels=4", "fix data.num_labels"]),
        ("fractional", ["label 1.5 in column 'label'", "train.csv row 2"]),
    ],
)
def test_bad_data_is_one_message_exit_2_and_nothing_written(
    tmp_path: Path, tiny_bert: Path, capsys: pytest.CaptureFixture, case: str, needles: list[str]
):
    directory = tmp_path / "bad"
    directory.mkdir()
    good = "".join(f"{i % 4 + 1},question number {i} about things\n" for i in range(16))
    train = {
        "empty_label": "label,text\n1,a b\n,c d\n" + good,
        "latin1": "label,text\n1,caf\xe9\n" + good,
        "no_header": good,
        "five_classes": "label,text\n5,a b\n" + good,
        "fractional": "label,text\n1,a b\n1.5,c d\n" + good,
    }[case]
    (directory / "train.csv").write_bytes(train.encode("latin-1"))
    (directory / "test.csv").write_text("label,text\n" + good)
    extra = {"num_labels": 4} if case == "five_classes" else {}
    config = _cli_config(tmp_path, tiny_bert, directory, **extra)
    assert main(["run", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("peftbench: error: ") and "Traceback" not in err
    assert err.count("peftbench: error:") == 1
    for needle in needles:
        assert needle in err, err
    assert not (tmp_path / "out").exists()  # nothing written


def test_four_class_csv_with_labels_1_to_4_end_to_end(tmp_path: Path, tiny_bert: Path):
    """Labels 1..4 train a 4-class model; predictions and the record show 1..4, not ids."""
    directory = tmp_path / "news"
    frames = {s: _news(48, seed, [1, 2, 3, 4]) for seed, s in enumerate(("train", "test"))}
    _write_csv(directory, frames)
    config = _cli_config(
        tmp_path, tiny_bert, directory, text_column=["title", "description"], num_labels=4
    )
    assert main(["run", str(config)]) == 0
    run_dir = tmp_path / "out" / "runs" / "lora-seed0"
    record = json.loads((run_dir / "record.json").read_text())
    predictions = json.loads((run_dir / "predictions.json").read_text())
    assert record["status"] == "success"
    assert record["data_info"]["label_names"] == ["1", "2", "3", "4"]
    assert record["data_info"]["text_columns"] == ["title", "description"]
    assert sorted(set(predictions["gold_values"])) == ["1", "2", "3", "4"]
    assert predictions["gold_values"] == [str(i + 1) for i in predictions["labels"]]
    assert predictions["predicted_values"] == [str(i + 1) for i in predictions["predictions"]]
    per_class = record["class_metrics"]["per_class"]
    assert list(per_class) == ["1", "2", "3", "4"]
    assert sum(c["support"] for c in per_class.values()) == 48
    matrix = record["class_metrics"]["confusion_matrix"]
    assert sum(map(sum, matrix)) == 48
    correct = sum(matrix[i][i] for i in range(4))
    assert correct / 48 == pytest.approx(record["metrics"]["accuracy"])
    report = (tmp_path / "out" / "report.md").read_text()
    assert "## Per-class results" in report and "### Confusion matrix: lora" in report
    assert "| gold \\ predicted | 1 | 2 | 3 | 4 |" in report
    first_row = " | ".join(map(str, matrix[0]))
    assert f"| 1 | {first_row} |" in report


def test_a_source_under_the_data_dir_is_recorded_relative_to_it(
    tmp_path: Path, bert_tokenizer, monkeypatch: pytest.MonkeyPatch
):
    _write_csv(tmp_path / "root" / "news", {s: _news(12, 1, [0, 1]) for s in ("train", "test")})
    monkeypatch.setenv("PEFTBENCH_DATA_DIR", str(tmp_path / "root"))
    prepared = _prepare(DataConfig(dataset="news", text_column="title"), bert_tokenizer, tmp_path)
    assert prepared.info["source"] == "$PEFTBENCH_DATA_DIR/news"


def test_one_file_is_the_training_split_and_its_test_split_is_carved(
    tmp_path: Path, bert_tokenizer
):
    directory = _write_csv(tmp_path / "file", {"reviews": _news(50, 3, ["a", "b"])})
    single = directory / "reviews.csv"
    with pytest.raises(PeftbenchError) as error:  # the default test_split: 'test'
        _prepare(DataConfig(dataset=str(single), text_column="title"), bert_tokenizer, tmp_path)
    message = str(error.value)
    assert "reviews.csv is one file, so it holds the training split only" in message
    assert "set data.test_split: null" in message
    data = DataConfig(dataset=str(single), text_column="title", test_split=None)
    prepared = _prepare(data, bert_tokenizer, tmp_path)
    assert prepared.info["train_size"] == 40 and prepared.info["test_size"] == 10


def test_json_arrays_byte_order_marks_and_unused_list_columns_are_read(
    tmp_path: Path, bert_tokenizer
):
    rows = [
        {"text": f"review {i}" if i else "007", "label": ["neg", "pos"][i % 2]} for i in range(20)
    ]
    array = tmp_path / "array"
    array.mkdir()
    (array / "train.json").write_text(json.dumps(rows))  # one JSON array, not JSON Lines
    lines = "\ufeff" + "".join(json.dumps(r) + "\n" for r in rows)
    (array / "test.jsonl").write_text(lines, encoding="utf-8")  # with a byte order mark
    data = DataConfig(dataset=str(array))
    assert read_split(data, "train")[0].texts[0] == "007"  # as written, not the number 7
    prepared = _prepare(data, bert_tokenizer, tmp_path)
    assert prepared.label_names == ["neg", "pos"] and prepared.info["test_size"] == 20
    nested = tmp_path / "nested"
    nested.mkdir()
    frame = pd.DataFrame({**pd.DataFrame(rows), "tags": [["x", "y"]] * 20})
    for split in ("train", "test"):
        frame.to_parquet(nested / f"{split}.parquet")  # a list column the config never reads
    assert _prepare(DataConfig(dataset=str(nested)), bert_tokenizer, tmp_path).num_labels == 2


def test_rows_are_named_by_their_place_in_the_file_after_rows_were_dropped(
    tmp_path: Path, bert_tokenizer
):
    frame = _news(20, seed=4, labels=[0, 1])
    frame["label"] = frame["label"].astype(object)
    frame.loc[1, "title"] = ""  # file row 2: dropped by drop_invalid
    frame.loc[4, "label"] = 2.5  # file row 5: the 4th row once row 2 is gone
    directory = _write_csv(tmp_path / "rows", {"train": frame, "test": _news(10, 5, [0, 1])})
    data = DataConfig(dataset=str(directory), text_column="title", drop_invalid=True)
    with pytest.raises(PeftbenchError, match=r"train split, train\.csv row 5"):
        _prepare(data, bert_tokenizer, tmp_path)


@pytest.mark.parametrize(
    ("case", "needles"),
    [
        ("header_only_test", ["the test split has no rows", "check the source's test data"]),
        ("too_few_names", ["has 3 columns but data.column_names names 2", "name every column"]),
        ("header_and_names", ["starts with a header row", "remove data.column_names"]),
        ("broken_jsonl", ["train.jsonl could not be read as JSONL", "fix the file"]),
        ("all_duplicates", ["the test split has no rows left after data.drop_duplicates"]),
    ],
)
def test_more_bad_data_is_one_message_exit_2_and_nothing_written(
    tmp_path: Path, tiny_bert: Path, capsys: pytest.CaptureFixture, case: str, needles: list[str]
):
    directory = tmp_path / "bad"
    directory.mkdir()
    rows = [(i % 2, f"question number {i} about things") for i in range(16)]
    csv_rows = "".join(f"{label},{text}\n" for label, text in rows)
    extra: dict = {}
    if case == "header_only_test":
        (directory / "train.csv").write_text("label,text\n" + csv_rows)
        (directory / "test.csv").write_text("label,text\n")
    elif case == "too_few_names":
        three = "".join(f"{i},{label},{text}\n" for i, (label, text) in enumerate(rows))
        for split in ("train", "test"):
            (directory / f"{split}.csv").write_text(three)  # an id column first
        extra = {"column_names": ["label", "text"]}
    elif case == "header_and_names":
        for split in ("train", "test"):
            (directory / f"{split}.csv").write_text("label,text\n" + csv_rows)
        extra = {"column_names": ["label", "text"]}
    elif case == "broken_jsonl":
        lines = "".join(json.dumps({"label": label, "text": text}) + "\n" for label, text in rows)
        (directory / "train.jsonl").write_text(lines + '{"label": 1, "text": "cut sho')
        (directory / "test.jsonl").write_text(lines)
    else:  # every test text is also a training text
        for split in ("train", "test"):
            (directory / f"{split}.csv").write_text("label,text\n" + csv_rows)
        extra = {"drop_duplicates": True}
    config = _cli_config(tmp_path, tiny_bert, directory, **extra)
    assert main(["run", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("peftbench: error: ") and "Traceback" not in err
    assert err.count("peftbench: error:") == 1
    for needle in needles:
        assert needle in err, err
    assert not (tmp_path / "out").exists()  # nothing written


def test_a_copy_with_a_folder_per_configuration_reads_the_configured_one(
    tmp_path: Path, bert_tokenizer
):
    """A Hub repository's layout (glue/rte/, glue/mrpc/): data.dataset_config picks the
    folder; without it, two configurations' files would be one split, so that is an error."""
    glue = tmp_path / "glue"
    for config, count in (("rte", 30), ("mrpc", 50)):
        (glue / config).mkdir(parents=True)
        for split in ("train", "validation"):
            frame = _news(count, seed=len(config), labels=[0, 1])
            frame.to_parquet(glue / config / f"{split}-00000-of-00001.parquet")
    data = DataConfig(
        dataset=str(glue), dataset_config="rte", text_column="title", test_split="validation"
    )
    prepared = _prepare(data, bert_tokenizer, tmp_path)
    assert prepared.info["train_size"] == prepared.info["test_size"] == 30
    with pytest.raises(PeftbenchError, match=r"has files in 2 folders \(mrpc, rte\)"):
        _prepare(DataConfig(dataset=str(glue), text_column="title"), bert_tokenizer, tmp_path)


def test_a_split_is_not_another_whose_name_starts_with_it(tmp_path: Path) -> None:
    """MNLI's validation_matched / validation_mismatched are not its 'validation' split: read
    as one, the search would choose the learning rate on the test split."""
    files = ["train.csv", "train_1.csv", "validation_matched.csv", "validation_mismatched.csv"]
    for name in files:
        (tmp_path / name).write_text("label,text\n0,a\n")
    assert split_files(tmp_path, "validation") == []
    assert [f.name for f in split_files(tmp_path, "train")] == ["train.csv", "train_1.csv"]
    assert [f.name for f in split_files(tmp_path, "validation_matched")] == [
        "validation_matched.csv"
    ]
