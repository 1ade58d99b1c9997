"""Config loading, validation and overrides; every shipped config loads."""

from __future__ import annotations

from pathlib import Path

import pytest

from peftbench.config import ConfigError, apply_override, load_config, parse_config
from peftbench.errors import PeftbenchError
from peftbench.methods.lora import LoraParams

CONFIGS = sorted((Path(__file__).resolve().parent.parent / "configs").glob("*.yaml"))

MINIMAL = {
    "name": "x",
    "model": {"name": "some/model"},
    "data": {"dataset": "imdb"},
    "methods": {"lora": {}},
}


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_every_shipped_config_loads(path: Path) -> None:
    config = load_config(path)
    assert config.methods
    assert config.model.name
    for entry in config.methods:
        assert entry.params.learning_rate > 0


def test_study_config_matches_the_study() -> None:
    config = load_config(Path(__file__).resolve().parent.parent / "configs/imdb-roberta-base.yaml")
    assert config.model.name == "roberta-base"
    assert (config.data.train_size, config.data.test_size) == (3000, 2000)
    t = config.training
    assert (t.epochs, t.train_batch_size, t.eval_batch_size, t.max_length) == (3, 16, 64, 512)
    assert [m.method for m in config.methods] == ["full", "lora", "qlora", "ia3"]
    lora = config.methods[1].params
    assert lora.r == 8 and lora.target_modules == ["query", "value"]


def test_defaults_and_method_params() -> None:
    config = parse_config(MINIMAL)
    assert config.seeds == [0]
    assert config.training.epochs == 3
    assert isinstance(config.methods[0].params, LoraParams)
    assert config.methods[0].params.r == 8
    assert str(config.output_path) == "results/x"


def test_overrides_reach_nested_fields_and_parse_yaml_values() -> None:
    raw = {**MINIMAL, "methods": {"lora": {}}}
    for override in (
        "training.epochs=1",
        "data.train_size=500",
        "methods.lora.r=16",
        "methods.lora.learning_rate=1e-3",
        "seeds=[0, 1, 2]",
    ):
        apply_override(raw, override)
    config = parse_config(raw)
    assert config.training.epochs == 1
    assert config.data.train_size == 500
    assert config.methods[0].params.r == 16
    assert config.methods[0].params.learning_rate == pytest.approx(1e-3)  # "1e-3" is a str
    assert config.seeds == [0, 1, 2]


def test_a_label_can_run_a_method_with_other_settings() -> None:
    config = parse_config({**MINIMAL, "methods": {"lora-r16": {"method": "lora", "r": 16}}})
    assert config.methods[0].label == "lora-r16"
    assert config.methods[0].method == "lora"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"trainng": {}}, "unknown field 'trainng'; did you mean 'training'?"),
        (
            {"training": {"epoch": 1}},
            "config.training: unknown field 'epoch'; did you mean 'epochs'?; accepted fields",
        ),
        (
            {"training": {"epochs": "three"}},
            "config.training.epochs: got 'three', expected an integer",
        ),
        ({"training": {"epochs": 0}}, "training.epochs: must be a positive integer"),
        ({"training": {"precision": "fp8"}}, "expected 'auto' | 'fp32' | 'bf16' | 'fp16'"),
        (
            {"training": {"attention_dropout": 1.5}},
            "training.attention_dropout: auto, model, or a probability in [0, 1), got 1.5",
        ),
        (
            {"training": {"attention_dropout": "off"}},
            "config.training.attention_dropout: got 'off', expected 'auto' | 'model' or a number",
        ),
        ({"methods": {"lora": {"rank": 8}}}, "methods.lora: unknown field 'rank'"),
        ({"methods": {"lora": {"r": 0}}}, "r and alpha must be positive"),
        ({"methods": {"adapterx": {}}}, "unknown method 'adapterx'; registered methods: "),
        ({"methods": {}}, "methods: expected a mapping"),
        ({"model": {}}, "config.model.name: required field is missing"),
        ({"seeds": []}, "seeds: give at least one seed"),
        (
            {"data": {"dataset": "imdb", "validation_size": float("inf")}},
            "data.validation_size: a fraction in",
        ),
        (
            {"data": {"dataset": "imdb", "validation_size": float("nan")}},
            "data.validation_size: a fraction in",
        ),
        (
            {"data": {"dataset": "imdb", "test_split": "train"}},
            "data.test_split: 'train' is also data.train_split, so the model would be tested on",
        ),
        (
            {"data": {"dataset": "imdb", "train_split": "all", "validation_split": "all"}},
            "data.validation_split: 'all' is also data.train_split, so the model would be tuned",
        ),
    ],
)
def test_bad_configs_name_the_field_and_the_fix(change: dict, message: str) -> None:
    with pytest.raises(PeftbenchError, match=None) as info:
        parse_config({**MINIMAL, **change})
    assert message in str(info.value)


def test_malformed_override_is_an_error() -> None:
    with pytest.raises(ConfigError, match="key.sub=value"):
        apply_override({}, "training.epochs")


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")


def test_execution_section_defaults_and_checks() -> None:
    config = parse_config(MINIMAL)
    assert config.execution.backend == "local" and config.execution.workers_per_run == 1
    ray = {
        "backend": "ray",
        "address": "auto",
        "max_concurrent": 4,
        "resources_per_run": {"cpus": 2, "gpus": 1},
        "workers_per_run": 2,
        "storage": "/shared/peftbench",
    }
    execution = parse_config({**MINIMAL, "execution": ray}).execution
    assert execution.resources_per_run.gpus == 1.0 and execution.max_concurrent == 4
    bad = [
        ({"backend": "spark"}, "execution.backend: got 'spark', expected 'local' | 'ray'"),
        ({"backend": "ray", "max_concurrent": 0}, "execution.max_concurrent: must be a positive"),
        ({"backend": "ray", "resources_per_run": {"gpu": 1}}, "unknown field 'gpu'"),
        ({"backend": "ray", "resources_per_run": {"cpus": 0}}, "cpus: must be > 0"),
        ({"workers_per_run": 2}, "execution.workers_per_run: needs execution.backend: ray"),
        ({"backend": "ray", "workers_per_run": 32}, "cannot exceed training.train_batch_size"),
    ]
    for section, message in bad:
        with pytest.raises(ConfigError, match=message.replace("|", r"\|")):
            parse_config({**MINIMAL, "execution": section})
