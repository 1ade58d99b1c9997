"""Hyperparameter search: chosen on a validation split carved from train, never on the test set."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import tiny_config, write_config

from peftbench.cli import main
from peftbench.config import ConfigError, parse_config
from peftbench.data import load_prepared
from peftbench.results import load_records


def test_search_picks_the_best_validation_value_and_never_reads_the_test_split(
    tiny_roberta: Path, tiny_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "out"
    raw = tiny_config(
        tiny_roberta,
        tiny_dataset,
        out,
        methods={"lora": {"search": {"learning_rate": [1.0e-6, 2.0e-2]}}},
    )
    raw["data"]["validation_size"] = 0.25
    config = write_config(raw, tmp_path / "search.yaml")
    assert main(["run", str(config)]) == 0

    records = {r["run_id"]: r for r in load_records(out)[0]}
    search_ids = ["lora-search-learning_rate=1e-06", "lora-search-learning_rate=0.02"]
    assert set(records) == {*search_ids, "lora-seed0"}
    scores = {}
    for run_id in search_ids:
        record = records[run_id]
        assert record["run_info"]["role"] == "search"
        # Trained on 96 examples, scored on the 32 held out: the test split is not there.
        assert record["data_info"]["train_size"] == 96
        assert record["data_info"]["test_size"] == 32
        assert record["data_info"]["evaluated_on"].startswith("validation")
        predictions = json.loads((out / "runs" / run_id / "predictions.json").read_text())
        assert len(predictions["labels"]) == 32
        scores[record["run_info"]["config"]["method_params"]["learning_rate"]] = record["metrics"][
            "accuracy"
        ]

    final = records["lora-seed0"]
    best = max(scores, key=lambda lr: (scores[lr], -list(scores).index(lr)))
    assert final["run_info"]["search"]["chosen"] == {"learning_rate": best}
    assert final["run_info"]["config"]["method_params"]["learning_rate"] == best
    tried = final["run_info"]["search"]["tried"]
    assert [t["values"]["learning_rate"] for t in tried] == [1.0e-6, 2.0e-2]
    assert final["data_info"]["test_size"] == 64 and final["data_info"]["train_size"] == 128

    # The search's data file holds train examples only: no test example can be read from it.
    cache_dir = out / "cache"
    search_file = next(cache_dir.glob("*-validation-*.pt"))
    full = load_prepared(next(p for p in cache_dir.glob("tokens-*.pt") if p != search_file))
    search = load_prepared(search_file)
    train_sequences = {tuple(ids) for ids in full.train.input_ids}
    for ids in search.train.input_ids + search.test.input_ids:
        assert tuple(ids) in train_sequences
    assert len(search.train) + len(search.test) == len(full.train)

    report = (out / "report.md").read_text()
    assert "Hyperparameter search" in report and "chosen" in report

    capsys.readouterr()
    assert main(["run", str(config)]) == 0  # restartable: nothing is redone
    assert capsys.readouterr().out.count("finished earlier, kept") == 3


def test_search_grid_values_are_validated() -> None:
    raw = {
        "name": "x",
        "model": {"name": "m"},
        "data": {"dataset": "d"},
        "methods": {"lora": {"search": {"r": [8, "sixteen"]}}},
    }
    with pytest.raises(ConfigError, match="methods.lora.search.r: got 'sixteen'"):
        parse_config(raw)
    raw["methods"] = {"lora": {"search": {"learning_rate": []}}}
    with pytest.raises(ConfigError, match="non-empty list"):
        parse_config(raw)
    raw["methods"] = {"lora": {"search": {"learning_rate": [1e-4, 1e-3], "r": [4, 8]}}}
    assert len(parse_config(raw).methods[0].grid()) == 4
