"""The report's memory: stacked bars by component, the Pareto front on tensor memory, memory
differences within run-to-run noise not used to rank, and serving figures in the runs table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from test_report import check_png, make_record, write

from peftbench.memory import COMPONENTS
from peftbench.report import build_report, load_runs, summarize
from peftbench.report.recommend import MethodStats, recommend


def _tensor_memory(train_activations: float, frozen: float = 475.0) -> dict[str, Any]:
    train = dict.fromkeys(COMPONENTS, 0.0)
    train.update(frozen_weights=frozen, trainable_weights=3.0, activations=train_activations)
    train["total_mib"] = sum(train[c] for c in COMPONENTS)
    evaluation = dict.fromkeys(COMPONENTS, 0.0)
    evaluation.update(frozen_weights=frozen, trainable_weights=3.0, temporaries=200.0)
    evaluation["total_mib"] = sum(evaluation[c] for c in COMPONENTS)
    return {"unit": "MiB", "tracked": True, "train": train, "eval": evaluation,
            "peak_mib": max(train["total_mib"], evaluation["total_mib"])}  # fmt: skip


SERVING = {
    "examples": 32,
    "unmerged": {
        "latency_s_per_example_batch1": 0.0125,
        "throughput_examples_per_s": 210.0,
        "tensor_peak_mib": 520.0,
        "weights_mib": 478.0,
    },
    "merged": {
        "latency_s_per_example_batch1": 0.0101,
        "throughput_examples_per_s": 250.0,
        "tensor_peak_mib": 515.0,
        "weights_mib": 475.0,
    },
    "not_merged_because": None,
    "merged_predictions_agree": True,
    "merged_max_logit_difference": 1e-6,
}


def _record(label: str, seed: int, accuracy: float, activations: float, **extra: Any) -> dict:
    record = make_record(label, seed, accuracy, cuda_mb=None, **extra)
    record["measurements"]["memory"]["tensor_mib"] = _tensor_memory(activations)
    record["measurements"]["serving"] = SERVING
    return record


@pytest.fixture
def experiment(tmp_path: Path) -> Path:
    out = tmp_path / "exp"
    for seed, activations in ((1, 3000.0), (2, 3100.0)):
        write(out, _record("LoRA", seed, 0.885, activations))
    write(out, _record("IA3", 1, 0.88, 3900.0, params=656_642))
    return out


def test_components_are_averaged_and_drawn_as_stacked_bars(experiment: Path) -> None:
    stats = {s.label: s for s in summarize(load_runs([experiment])[0])}
    lora = stats["LoRA"].memory_components
    assert lora["train"]["activations"] == pytest.approx(3050.0)  # mean of the two seeds
    assert sum(lora["train"][c] for c in COMPONENTS) == pytest.approx(3050.0 + 478.0)
    assert lora["eval"]["temporaries"] == pytest.approx(200.0)
    result = build_report([experiment], formats=("md",))
    png = experiment / "plots" / "memory_components.png"
    assert png in result.files
    check_png(png)
    md = (experiment / "report.md").read_text()
    assert "![Tensor memory by component](plots/memory_components.png)" in md
    assert "Live tensor memory (MiB = 2**20 bytes) at each phase's peak, by component" in md


def test_pareto_front_and_cheapest_pick_use_tensor_memory(experiment: Path) -> None:
    result = build_report([experiment], formats=("md",))
    headlines = [r.headline for r in result.recommendations["imdb-roberta"]]
    assert "Pareto-optimal, accuracy vs peak tensor memory" in headlines
    assert "Cheapest by peak tensor memory among the best group" in headlines


def test_serving_figures_are_in_the_runs_table(experiment: Path) -> None:
    build_report([experiment], formats=("md", "csv"))
    summary = (experiment / "summary.md").read_text()
    for header in (
        "serving latency, batch 1, unmerged (ms/example)",
        "serving throughput, merged (examples/s)",
        "serving tensor memory, merged (MiB)",
        "merged",
    ):
        assert header in summary
    row = next(line for line in summary.splitlines() if "lora-seed1" in line)
    for cell in ("12.5", "10.1", "210.0", "250.0", "520", "515", "same predictions"):
        assert f"| {cell} |" in row, cell
    csv_text = (experiment / "summary.csv").read_text()
    assert "serving_latency_ms_merged" in csv_text


def _method(name: str, accuracy: float, memory: float, std: float | None = None) -> MethodStats:
    stats = MethodStats(name, 1, 2000, {"accuracy": accuracy, "tensor_peak_mib": memory})
    stats.label = name
    if std is not None:
        stats.n_seeds = 3
        stats.std["tensor_peak_mib"] = std
    return stats


def _rec(recs: list, kind: str, headline_part: str):
    return next(r for r in recs if r.kind == kind and headline_part in r.headline)


def test_memory_within_one_percent_is_a_tie_for_single_seeds() -> None:
    # Accuracies within binomial noise (n = 2000): both in the best group.
    best, other = _method("full", 0.900, 1000.0), _method("lora", 0.899, 995.0)
    recs = recommend([best, other], "tensor_peak_mib")
    cheapest = _rec(recs, "cheapest", "peak tensor memory")
    # 5 MiB apart is within 1 % of 1,000 MiB: the best method is as cheap, and the tie is said.
    assert cheapest.subjects == ("full",)
    assert "Tied on memory with lora" in cheapest.text
    assert cheapest.figures["tied_on_cost"] == ["lora"]
    # Beyond the floor the cheaper one is picked.
    far = _method("lora", 0.899, 950.0)
    cheapest = _rec(recommend([best, far], "tensor_peak_mib"), "cheapest", "peak tensor")
    assert cheapest.subjects == ("lora", "full") and "Tied on memory" not in cheapest.text


def test_memory_within_the_seed_spread_is_a_tie() -> None:
    best = _method("full", 0.900, 1000.0, std=60.0)
    other = _method("lora", 0.899, 950.0, std=5.0)  # 50 MiB apart, seeds vary by 60
    cheapest = _rec(recommend([best, other], "tensor_peak_mib"), "cheapest", "peak tensor")
    assert cheapest.subjects == ("full",) and "within the noise of 60.0" in cheapest.text
    steady = _method("full", 0.900, 1000.0, std=10.0)
    cheapest = _rec(recommend([steady, other], "tensor_peak_mib"), "cheapest", "peak tensor")
    assert cheapest.subjects == ("lora", "full")


def test_pareto_front_does_not_rank_by_memory_within_noise() -> None:
    # lora is 3 MiB cheaper (within 1 %) and less accurate: tied on memory, so dominated.
    accurate, cheap = _method("full", 0.95, 1000.0), _method("lora", 0.80, 997.0)
    pareto = _rec(recommend([accurate, cheap], "tensor_peak_mib"), "pareto", "tensor memory")
    assert pareto.subjects == ("full",)
    cheaper = _method("lora", 0.80, 900.0)
    pareto = _rec(recommend([accurate, cheaper], "tensor_peak_mib"), "pareto", "tensor memory")
    assert pareto.subjects == ("full", "lora")


def test_a_merge_that_changes_predictions_says_how_many_and_by_how_much() -> None:
    from peftbench.report.columns import _merge_status

    record = _record("LoRA", 1, 0.885, 3000.0)
    assert _merge_status(record) == "same predictions"
    serving = {
        **SERVING,
        "merged_predictions_agree": False,
        "merged_predictions_differ": 1,
        "merged_max_logit_difference": 0.016,
    }
    record["measurements"]["serving"] = serving
    assert _merge_status(record) == "1 of 32 predictions differ (max logit difference 0.016)"
    record["measurements"]["serving"] = {**serving, "merged": None, "not_merged_because": "x: y"}
    assert _merge_status(record) == "no: x"
