"""benchmarks/pipeline_equivalence.py: ablation arms of one or several switches, which arms
each is compared with, and the refusal of an arm that would also change the precision."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import REPO

from peftbench.results import RECORD_FILE, RUNS_DIR


@pytest.fixture
def equivalence(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    import pipeline_equivalence

    return pipeline_equivalence


def test_an_arm_of_several_switches_is_compared_with_each_arm_lacking_one(equivalence) -> None:
    both = equivalence.ablation_arm(
        sorted(["training.precision=fp32", "training.attention_dropout=model"])
    )
    assert both == "default+training.attention_dropout=model+training.precision=fp32"
    assert equivalence.arm_overrides(both) == [
        "training.pipeline=default",
        "training.attention_dropout=model",
        "training.precision=fp32",
    ]
    assert equivalence.arm_overrides("reference") == ["training.pipeline=reference"]
    fp32 = equivalence.ablation_arm(["training.precision=fp32"])
    dropout = equivalence.ablation_arm(["training.attention_dropout=model"])
    grouping = equivalence.ablation_arm(["training.group_by_length=false"])
    arms = [fp32, dropout, grouping, both]
    assert equivalence.one_switch_less(both, arms) == [fp32, dropout]
    assert equivalence.one_switch_less(fp32, arms) == []  # compared with the default anyway


def test_an_arm_that_would_change_the_precision_too_is_refused(
    equivalence, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    record = {
        "run_id": "lora-seed0",
        "status": "success",
        "run_info": {"config": {"training": {"precision": "auto"}}},
        "train_info": {"precision": "bf16"},  # the default arm ran on a CPU with AVX-512 BF16
    }
    run_dir = tmp_path / "default" / RUNS_DIR / "lora-seed0"
    run_dir.mkdir(parents=True)
    (run_dir / RECORD_FILE).write_text(json.dumps(record))
    monkeypatch.setattr(equivalence, "OUTPUT", tmp_path)
    monkeypatch.setattr(equivalence, "auto_precision_here", lambda training: ("fp32", "cpu"))

    why = equivalence.precision_mismatch(["training.attention_dropout=model"])
    assert why is not None and "computed in bf16" in why and "in fp32" in why
    pinned = ["training.attention_dropout=model", "training.precision=fp32"]
    assert equivalence.precision_mismatch(pinned) is None  # both arms' precision is chosen

    monkeypatch.setattr(equivalence, "auto_precision_here", lambda training: ("bf16", "cpu"))
    assert equivalence.precision_mismatch(["training.attention_dropout=model"]) is None
