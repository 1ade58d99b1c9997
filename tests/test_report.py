"""`build_report` end to end on hand-made run records: tables, plots, CSV, HTML, bad input."""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import matplotlib.image
import numpy as np
import pytest
from PIL import Image

from peftbench.errors import PeftbenchError
from peftbench.report import ReportResult, build_report, load_runs, memory_key, summarize
from peftbench.report.significance import RunPredictions, Settings, compare_methods
from peftbench.results import SCHEMA_VERSION, predictions_path, record_path, write_json_atomic
from peftbench.stats import mcnemar_p

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
PLOTS = (
    "accuracy",
    "accuracy_vs_trainable_params",
    "accuracy_vs_cuda_peak_allocated_mb",
    "accuracy_vs_train_time_s",
    "learning_curves",
    "costs",
)


def make_record(
    label: str,
    seed: int,
    accuracy: float,
    *,
    method: str | None = None,
    experiment: str = "imdb-roberta",
    status: str = "success",
    params: int = 887_042,
    time_s: float = 420.0,
    cuda_mb: float | None = 4120.0,
    size_mb: float = 3.4,
    epochs: int = 2,
    test_size: int = 1000,
) -> dict[str, Any]:
    """A valid RunRecord per results.py with known figures; failed runs carry an error."""
    ok = status == "success"
    history = [
        {
            "epoch": e,
            "train_loss": 0.7 / e,
            "train_time_s": time_s / epochs,
            "eval_time_s": 5.0,
            "eval": {"accuracy": accuracy - 0.02 * (epochs - e), "macro_f1": accuracy - 0.01},
        }
        for e in range(1, (epochs if ok else 1) + 1)
    ]
    return {
        "schema_version": SCHEMA_VERSION,
        "run_id": f"{label.lower()}-seed{seed}",
        "config_hash": "0" * 64,
        "status": status,
        "error": None
        if ok
        else {
            "type": "NonFiniteLoss",
            "message": "loss became nan at step 12",
            "epoch_reached": 1,
            "traceback": None,
        },
        "run_info": {
            "label": label,
            "method": method or label.lower(),
            "seed": seed,
            "experiment": experiment,
            "started_at": "2026-01-01T00:00:00Z",
            "finished_at": "2026-01-01T00:10:00Z",
            "config": {"model": "roberta-base", "method": {"name": label.lower(), "r": 8}},
        },
        "data_info": {"num_labels": 2, "train_size": 4000, "test_size": test_size},
        "train_info": {
            "epochs": history,
            "train_time_s": time_s if ok else None,
            "eval_time_s": 10.0,
            "train_tokens_per_s": 5000.0,
            "precision": "bf16",
        },
        "metrics": {"accuracy": accuracy, "macro_f1": accuracy - 0.01} if ok else {},
        "measurements": {
            "trainable_params": params,
            "total_params": 124_647_170 + (0 if params == 124_647_170 else params),
            "trainable_percent": 100 * params / 124_647_170,
            "memory": {
                "device": "cuda" if cuda_mb else "cpu",
                "peak_rss_mb": 3000.0,
                "cuda_peak_allocated_mb": cuda_mb,
                "cuda_peak_reserved_mb": None,
                "nvml_peak_used_mb": None,
            },
            "model_size_mb": size_mb,
        },
        "meta_info": {"python": "3.11.2", "packages": {"torch": "2.13.0"}, "gpu": "H200"},
    }


def write(out: Path, record: dict[str, Any]) -> Path:
    """Write a record where the runner would, runs/<run_id>/record.json."""
    path = record_path(out, record["run_id"])
    write_json_atomic(path, record)
    return path


def write_experiment(out: Path) -> Path:
    """Full (1 seed), LoRA (3 seeds: 88.0, 89.0, 88.5 %), QLoRA, IA3 and one failed LoRA seed."""
    write(
        out,
        make_record("Full", 1, 0.89, params=124_647_170, time_s=1140, cuda_mb=7746, size_mb=475.0),
    )
    for seed, acc in ((1, 0.88), (2, 0.89), (3, 0.885)):
        write(out, make_record("LoRA", seed, acc))
    write(out, make_record("LoRA", 4, 0.5, status="failed"))
    write(out, make_record("QLoRA", 1, 0.88, time_s=600, cuda_mb=2500, size_mb=3.5))
    write(out, make_record("IA3", 1, 0.86, params=656_642, time_s=400, cuda_mb=3900, size_mb=2.6))
    return out


@pytest.fixture
def experiment(tmp_path: Path) -> Path:
    return write_experiment(tmp_path / "exp")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ReportResult]:
    """The experiment plus a corrupt and an old-schema record, reported once in every format."""
    out = write_experiment(tmp_path_factory.mktemp("built") / "exp")
    broken = record_path(out, "broken-seed1")
    broken.parent.mkdir(parents=True)
    broken.write_text('{"schema_version": 1, "run_id": ')
    write(out, {**make_record("Old", 1, 0.7), "schema_version": 0})
    return out, build_report([out], reference=True)


def check_png(path: Path) -> None:
    assert path.read_bytes()[:8] == PNG_MAGIC
    with Image.open(path) as image:
        image.verify()
    pixels = matplotlib.image.imread(path)
    assert pixels.shape[0] > 100 and pixels.shape[1] > 100


def test_mean_and_sample_std_over_seeds(experiment: Path) -> None:
    runs, skipped = load_runs([experiment])
    stats = {s.label: s for s in summarize(runs)}
    lora = stats["LoRA"]
    assert lora.n_seeds == 3 and len(lora.failures) == 1  # the failed seed 4 is not averaged
    assert lora.mean["accuracy"] == pytest.approx(0.885)
    # deviations -0.005, +0.005, 0: sqrt((2.5e-5 + 2.5e-5) / (3 - 1)) = 0.005
    assert lora.std["accuracy"] == pytest.approx(0.005)
    assert "accuracy" not in stats["Full"].std
    assert skipped == []
    assert memory_key(runs) == "cuda_peak_allocated_mb"
    # Tensor memory, once every run records it, is the figure plots and advice use.
    for run in runs:
        if run.ok:
            run.record["measurements"]["memory"]["tensor_mib"] = {"unit": "MiB", "peak_mib": 500.0}
    assert memory_key(runs) == "tensor_peak_mib"


def test_every_plot_is_a_valid_png_and_svg(built: tuple[Path, ReportResult]) -> None:
    out, result = built
    for key in PLOTS:
        png, svg = out / "plots" / f"{key}.png", out / "plots" / f"{key}.svg"
        assert png in result.files and svg in result.files
        check_png(png)
        assert ET.parse(svg).getroot().tag == "{http://www.w3.org/2000/svg}svg"


def test_markdown_tables_and_recommendations(built: tuple[Path, ReportResult]) -> None:
    out, result = built
    assert {p.name for p in result.files} >= {
        "report.md",
        "report.html",
        "summary.csv",
        "methods.csv",
    }
    md = (out / "report.md").read_text()
    assert "| imdb-roberta | LoRA | 3 success, 1 not successful | 3 | bf16 | 88.50 ± 0.50 |" in md
    assert "| imdb-roberta | Full | 1 success | 1 | bf16 | 89.00 |" in md
    assert "124,647,170" in md and "peak CUDA allocated (MiB)" in md
    assert "![Accuracy vs trainable parameters](plots/accuracy_vs_trainable_params.png)" in md
    assert "| LoRA | lora-seed4 | 4 | failed | NonFiniteLoss: loss became nan at step 12 |" in md
    # Without predictions files the binomial-noise rule decides: LoRA and QLoRA are within noise.
    assert "**Highest accuracy, no clear lead:** Full, accuracy 89.00 %" in md
    assert "not distinguishable from LoRA (within measurement noise)" in md
    assert "QLoRA, 2,500 MiB against 7,746 MiB for Full (-67.7 %)" in md
    assert "LoRA, 420.0 s against 1,140.0 s for Full" in md
    assert "seed-to-seed std: LoRA 0.50 pp" in md
    assert '"r": 8' in md and "H200" in md  # configuration and environment
    assert result.recommendations["imdb-roberta"][0].subjects == ("Full",)


def test_corrupt_and_old_schema_records_are_skipped(built: tuple[Path, ReportResult]) -> None:
    out, result = built
    assert any("broken-seed1" in m and "not valid JSON" in m for m in result.skipped)
    assert any("old-seed1" in m and "schema version 0" in m for m in result.skipped)
    assert any("seed 4: failed" in m and "excluded from the means" in m for m in result.skipped)
    missing = "no predictions file for full-seed1, ia3-seed1, lora-seed1"
    assert any(missing in m for m in result.skipped)
    assert len(result.skipped) == 4
    md = (out / "report.md").read_text()
    assert "## Skipped" in md and "not valid JSON" in md and "schema version 0" in md
    assert "| Old |" not in md


def test_reference_rows_are_marked(built: tuple[Path, ReportResult]) -> None:
    out, _ = built
    md = (out / "report.md").read_text()
    published = [line for line in md.splitlines() if "| published (reference study) |" in line]
    assert len(published) == 4
    assert any("| Full |" in r and "124,647,170" in r and "7,746" in r for r in published)
    assert any("| IA3 |" in r and "656,642" in r for r in published)
    assert (out / "report.html").read_text().count('<tr class="published">') == 4


def test_html_is_self_contained(built: tuple[Path, ReportResult]) -> None:
    html = (built[0] / "report.html").read_text()
    assert html.count('<img src="data:image/png;base64,') == len(PLOTS)
    assert "<table>" in html and "<style>" in html
    for external in ('src="http', 'href="http', "<script", "<link", "url("):
        assert external not in html


def test_csv_has_one_row_per_run_with_raw_values(experiment: Path) -> None:
    result = build_report([experiment], formats=("csv",))
    assert {p.name for p in result.files} == {"summary.csv", "methods.csv"}
    rows = list(csv.DictReader(io.StringIO((experiment / "summary.csv").read_text())))
    assert len(rows) == 7  # Full, LoRA x 3 + failed seed 4, QLoRA, IA3
    full = next(r for r in rows if r["label"] == "Full")
    assert float(full["accuracy"]) == 0.89 and full["trainable_params"] == "124647170"
    failed = next(r for r in rows if r["status"] == "failed")
    assert failed["error_type"] == "NonFiniteLoss"
    summary = list(csv.DictReader(io.StringIO((experiment / "methods.csv").read_text())))
    lora = next(r for r in summary if r["method"] == "LoRA")
    assert lora["n_seeds"] == "3" and float(lora["accuracy_std"]) == pytest.approx(0.005)
    assert not (experiment / "report.md").exists() and not (experiment / "plots").exists()


def test_several_dirs_are_grouped_and_labelled(tmp_path: Path, experiment: Path) -> None:
    cpu = tmp_path / "cpu-run"
    write(cpu, make_record("LoRA", 1, 0.81, experiment="imdb-minilm-cpu", cuda_mb=None))
    write(cpu, make_record("IA3", 1, 0.0, experiment="imdb-minilm-cpu", status="failed"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(PeftbenchError, match="--out"):
        build_report([experiment, cpu])
    result = build_report([experiment, cpu, empty], out_dir=tmp_path / "report", formats=("md",))
    md = (tmp_path / "report" / "report.md").read_text()
    assert "| experiment | method |" in md
    assert "| imdb-minilm-cpu | LoRA | 1 success | 1 | bf16 | 81.00 |" in md
    assert "| imdb-minilm-cpu | IA3 | 1 not successful | 0 | — |" in md
    assert "### imdb-roberta" in md and "### imdb-minilm-cpu" in md
    assert "**Failed runs:** IA3: 1 of 1 run(s) did not succeed" in md
    assert any("empty" in m and "no run records" in m for m in result.skipped)
    assert any("imdb-minilm-cpu / IA3" in m and "excluded" in m for m in result.skipped)
    # The CPU experiment's memory is process RSS, the GPU one's stays CUDA; each plot says which.
    cpu_advice = md.split("### imdb-minilm-cpu")[1].split("## Plots")[0]
    assert "Cheapest by peak process RSS" in cpu_advice and "CUDA" not in cpu_advice
    assert "Cheapest by peak CUDA allocated" in md.split("### imdb-minilm-cpu")[0]
    for key in ("accuracy_vs_peak_rss_mb", "accuracy_vs_cuda_peak_allocated_mb", "costs"):
        check_png(tmp_path / "report" / "plots" / f"{key}.png")


@pytest.mark.writes_invalid_records  # the odd record is malformed on purpose
def test_only_failed_or_odd_runs_still_build(tmp_path: Path) -> None:
    out = tmp_path / "failed"
    write(out, make_record("LoRA", 1, 0.0, status="failed"))
    odd = {
        **make_record("IA3", 1, float("nan"), status="canceled"),
        "train_info": [],
        "error": None,
    }
    write(out, odd)
    result = build_report([out], formats=("md", "html"))
    md = (out / "report.md").read_text()
    assert "| LoRA | 1 not successful | 0 |" in md and "| IA3 | 1 not successful | 0 |" in md
    assert "| IA3 | ia3-seed1 | 1 | canceled | — | — |" in md
    assert "no figures for this method" in md
    assert "No accuracy-vs-trainable parameters (count, log scale) plot" in md
    assert "No learning curves" in md and not list((out / "plots").glob("*.png"))
    assert len(result.skipped) == 2 and all("excluded from the means" in m for m in result.skipped)


def test_bad_arguments_and_no_valid_records(tmp_path: Path, experiment: Path) -> None:
    with pytest.raises(PeftbenchError, match="unknown report format"):
        build_report([experiment], formats=("md", "pdf"))
    bad = tmp_path / "bad"
    path = record_path(bad, "x")
    path.parent.mkdir(parents=True)
    path.write_text("not json")
    with pytest.raises(PeftbenchError, match="no valid run record.*not valid JSON"):
        build_report([bad, tmp_path / "missing"], out_dir=tmp_path / "r")
    assert not (tmp_path / "r").exists()


# ----- statistics from saved predictions -----

N = 2000
WRONG = {
    "Full": set(range(220)),  # 89.0 %
    "LoRA": set(range(210)) | set(range(1980, 2000)),  # 88.5 %: only Full right 20, only LoRA 10
    "IA3": set(range(300)),  # 85.0 %: only Full right on 220-299 (80), only IA3 right on none
}


def predictions_with_errors(wrong: set[int], n: int = N) -> tuple[list[int], list[int]]:
    """Balanced binary labels and predictions that are wrong exactly at the given indices."""
    labels = [i % 2 for i in range(n)]
    return labels, [1 - y if i in wrong else y for i, y in enumerate(labels)]


def write_with_predictions(
    out: Path, label: str, seed: int, wrong: set[int], n: int = N, **kwargs: Any
) -> dict[str, Any]:
    """A successful record whose accuracy matches its predictions file, both where runs go."""
    record = make_record(label, seed, (n - len(wrong)) / n, test_size=n, **kwargs)
    write(out, record)
    labels, predictions = predictions_with_errors(wrong, n)
    data = {
        "run_id": record["run_id"],
        "example_ids": list(range(n)),
        "labels": labels,
        "predictions": predictions,
    }
    write_json_atomic(predictions_path(out, record["run_id"]), data)
    return record


@pytest.fixture(scope="module")
def tested(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ReportResult]:
    """Full, LoRA (0.5 pp behind, not significant) and IA3 (4 pp behind), one seed each."""
    out = tmp_path_factory.mktemp("tested") / "exp"
    for label, wrong in WRONG.items():
        write_with_predictions(out, label, 1, wrong)
    return out, build_report([out], resamples=500)


def test_significance_table_in_markdown_html_and_csv(tested: tuple[Path, ReportResult]) -> None:
    out, result = tested
    # McNemar, Full vs LoRA: b = 20, c = 10, p = 2 P(X <= 10 | 30, 1/2) = 0.0987. Holm over the
    # three comparisons: the two others are < 1e-10, so 0.0987 is the largest and stays as is.
    assert mcnemar_p(20, 10) == pytest.approx(0.098737, abs=1e-6)
    assert result.skipped == []
    md = (out / "report.md").read_text()
    assert "## Statistical significance" in md and "95 % percentile bootstrap" in md
    assert (
        "| A | B | seed | n test | A − B (pp) | CI (pp) | only A right / only B right "
        "| McNemar p | Holm p | significant |"
    ) in md
    assert "| Full | IA3 | 1 | 2,000 | +4.00 |" in md
    assert "| 80 / 0 | < 0.0001 | < 0.0001 | yes |" in md
    assert "| Full | LoRA | 1 | 2,000 | +0.50 |" in md
    assert "| 20 / 10 | 0.0987 | 0.0987 | no |" in md
    assert "| LoRA | IA3 | 1 | 2,000 | +3.50 |" in md and "| 90 / 20 |" in md
    full_row = next(line for line in md.splitlines() if line.startswith("| Full | 1 | full-seed1"))
    assert "| 2,000 | 89.00 | [" in full_row
    html = (out / "report.html").read_text()
    assert "<th>McNemar p</th>" in html and '<td class="n">0.0987</td>' in html
    assert '<li class="significant">' in html and '<li class="noise">' in html
    rows = list(csv.DictReader(io.StringIO((out / "significance.csv").read_text())))
    # methods in report order (run directories sorted: full, ia3, lora), A the more accurate
    assert [(r["method_a"], r["method_b"], r["significant"]) for r in rows] == [
        ("Full", "IA3", "True"),
        ("Full", "LoRA", "False"),
        ("LoRA", "IA3", "True"),
    ]
    assert float(rows[1]["mcnemar_p"]) == pytest.approx(0.098737, abs=1e-6)
    assert float(rows[1]["ci_low"]) < 0 < float(rows[1]["ci_high"])


def test_recommendations_follow_the_paired_tests(tested: tuple[Path, ReportResult]) -> None:
    out, result = tested
    recs = result.recommendations["imdb-roberta"]
    best = recs[0]
    assert best.headline == "Highest accuracy, no clear lead" and best.subjects == ("Full",)
    assert "not distinguishable from LoRA (Holm-adjusted McNemar p = 0.0987)" in (best.text)
    assert "95 % bootstrap CI" in best.text
    tie = next(r for r in recs if r.subjects == ("Full", "LoRA"))
    assert tie.kind == "noise" and "not distinguishable at α = 0.05" in tie.text
    assert "McNemar exact p = 0.0987" in tie.text and "+0.50 pp" in tie.text
    win = next(r for r in recs if r.subjects == ("Full", "IA3"))
    assert win.kind == "significant"
    assert win.text.startswith("Full is more accurate than IA3: +4.00 pp")
    assert "Holm-adjusted p < 0.0001" in win.text
    md = (out / "report.md").read_text()
    assert "**Not distinguishable:** Full (89.00 %) and LoRA (88.50 %)" in md
    assert "**Significant difference:** Full is more accurate than IA3" in md
    assert "unless the paired tests find the difference significant" in md


def test_statistics_settings_are_keywords(tmp_path: Path) -> None:
    out = tmp_path / "exp"
    for label, wrong in WRONG.items():
        write_with_predictions(out, label, 1, wrong)
    # At alpha = 0.2 the 0.5 pp gap (Holm p = 0.0987) is significant: Full leads clearly.
    result = build_report([out], formats=("csv",), alpha=0.2, level=0.9, resamples=200)
    recs = result.recommendations["imdb-roberta"]
    assert recs[0].headline == "Most accurate"
    assert "90 % bootstrap CI" in recs[0].text
    lora = next(r for r in recs if r.subjects == ("Full", "LoRA"))
    assert lora.kind == "significant" and "α = 0.2" in lora.text
    for bad in ({"resamples": 0}, {"level": 1.5}, {"alpha": 0.0}):
        with pytest.raises(PeftbenchError, match="report statistics"):
            build_report([out], formats=("csv",), **bad)


def test_several_seeds_are_compared_per_seed_and_combined() -> None:
    def run(label: str, seed: int, wrong: set[int]) -> RunPredictions:
        labels, predictions = predictions_with_errors(wrong, 1000)
        ids, y, p = np.arange(1000), np.array(labels), np.array(predictions)
        return RunPredictions(f"{label}-seed{seed}", seed, ids, y, p)

    # A beats B clearly on seeds 1 and 2 (60 / 0 discordant) and not at all on seed 3 (5 / 5).
    a = [run("a", s, set(range(100))) for s in (1, 2, 3)]
    b = [run("b", s, set(range(160))) for s in (1, 2)] + [run("b", 3, set(range(5, 105)))]
    # C has no seed in common with A or B.
    c = [run("c", 9, set(range(100)))]
    pairs, messages = compare_methods("exp", {"B": b, "A": a, "C": c}, Settings(resamples=200))
    assert len(pairs) == 1 and any("no seed in common" in m for m in messages)
    pair = pairs[0]
    assert (pair.a, pair.b) == ("A", "B")  # A has the higher mean, whatever the input order
    assert [(s.mcnemar.b, s.mcnemar.c) for s in pair.seeds] == [(60, 0), (60, 0), (5, 5)]
    assert [s.significant for s in pair.seeds] == [True, True, False]
    # Holm over three: the seed 3 p = 1 is largest, so stays 1; the others are doubled / tripled.
    assert pair.seeds[2].holm_p == 1.0
    assert pair.seeds[0].holm_p == pytest.approx(3 * mcnemar_p(60, 0))
    assert pair.mean_difference == pytest.approx((0.06 + 0.06 + 0.0) / 3)
    assert pair.significant_seeds == 2 and not pair.significant and pair.p_value == 1.0
    assert pair.across_seeds is not None and pair.across_seeds.low < 0


def test_bad_or_missing_predictions_never_stop_the_report(tmp_path: Path) -> None:
    out = tmp_path / "exp"
    for label, wrong in WRONG.items():
        write_with_predictions(out, label, 1, wrong)
    write_with_predictions(out, "QLoRA", 1, set(range(230)))
    write_with_predictions(out, "Prefix", 1, set(range(240)))
    write_with_predictions(out, "Odd", 1, set(range(250)))
    predictions_path(out, "full-seed1").unlink()  # missing
    predictions_path(out, "qlora-seed1").write_text('{"labels": [0, 1')  # truncated
    write_json_atomic(predictions_path(out, "prefix-seed1"), [0, 1])  # not an object
    odd = json.loads(predictions_path(out, "odd-seed1").read_text())
    odd["predictions"] = odd["predictions"][:-1]  # one short
    write_json_atomic(predictions_path(out, "odd-seed1"), odd)
    # IA3's predictions give 85.0 %, but its record now says 86.0 %
    record = json.loads(record_path(out, "ia3-seed1").read_text())
    record["metrics"]["accuracy"] = 0.86
    write_json_atomic(record_path(out, "ia3-seed1"), record)
    result = build_report([out], formats=("md",), resamples=100)
    skipped = "\n".join(result.skipped)
    assert "no predictions file for full-seed1" in skipped
    assert "qlora-seed1/predictions.json: unreadable" in skipped
    assert "prefix-seed1/predictions.json: not a predictions object" in skipped
    assert "odd-seed1/predictions.json: example_ids, labels, predictions have lengths" in skipped
    assert "run ia3-seed1: its predictions give accuracy 85.00 % but its record says 86.00 %" in (
        skipped
    )
    # Only LoRA has usable predictions: nothing to pair, so the binomial-noise rule decides.
    assert result.comparisons["imdb-roberta"] == []
    recs = result.recommendations["imdb-roberta"]
    assert any(r.kind == "noise" and r.headline == "Within noise" for r in recs)
    md = (out / "report.md").read_text()
    assert "No pairwise comparison" in md and "| LoRA | 1 | lora-seed1 |" in md


def test_runs_on_different_test_examples_are_not_paired(tmp_path: Path) -> None:
    out = tmp_path / "exp"
    write_with_predictions(out, "Full", 1, WRONG["Full"])
    write_with_predictions(out, "LoRA", 1, WRONG["LoRA"])
    data = json.loads(predictions_path(out, "lora-seed1").read_text())
    data["example_ids"] = list(range(1, N + 1))
    write_json_atomic(predictions_path(out, "lora-seed1"), data)
    result = build_report([out], formats=("csv",), resamples=100)
    assert any("did not predict the same test examples" in m for m in result.skipped)
    assert result.comparisons["imdb-roberta"] == []
    assert not (out / "significance.csv").exists()


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary (apt-get install chromium)")
def test_html_renders_in_headless_chromium(
    built: tuple[Path, ReportResult], tmp_path: Path
) -> None:
    page = (built[0] / "report.html").resolve().as_uri()
    shot = tmp_path / "shot.png"
    flags = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
    ]
    subprocess.run(
        [*flags, f"--screenshot={shot}", "--window-size=1280,2000", page],
        check=True,
        capture_output=True,
        timeout=120,
    )
    with Image.open(shot) as image:
        colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 50
    dom = subprocess.run(
        [*flags, "--dump-dom", page], check=True, capture_output=True, text=True, timeout=120
    ).stdout
    assert "<table>" in dom and "<img" in dom and "88.50 ± 0.50" in dom


def test_the_study_orderings_are_tested_with_the_paired_comparisons(tmp_path: Path) -> None:
    out = tmp_path / "exp"
    # Two seeds. Full 90.0 / 89.5 %, QLoRA 80 %, LoRA 85.25 %, IA3 85.10 %: the study's
    # Full > QLoRA > LoRA > IA3 holds for Full over each, is reversed for QLoRA, and LoRA is
    # ahead of IA3 on 3 examples only (3 / 0 discordant, McNemar p = 0.25).
    wrong = {
        "Full": {1: set(range(200)), 2: set(range(210))},
        "QLoRA": {1: set(range(400)), 2: set(range(400))},
        "LoRA-r8": {1: set(range(295)), 2: set(range(295))},  # found by method, not label
        "IA3": {1: set(range(298)), 2: set(range(298))},
    }
    for label, by_seed in wrong.items():
        method = "lora" if label == "LoRA-r8" else label.lower()
        for seed, errors in by_seed.items():
            write_with_predictions(out, label, seed, errors, method=method)
    build_report([out], formats=("md",), reference=True, resamples=200)
    md = (out / "report.md").read_text()
    assert "## The reference study's orderings, tested here" in md
    assert "Full (89 %) > QLoRA (88 %) > LoRA (87 %) > IA3 (86 %)" in md
    assert (
        "Of the study's 6 orderings: holds (significant): 3; same direction, not "
        "significant: 1; reversed (significant): 2."
    ) in md
    rows = {line.split(" | ")[0][2:]: line for line in md.splitlines() if " > " in line[:20]}
    assert "| +1.00 | +9.75 | [" in rows["Full > QLoRA"] and rows["Full > QLoRA"].endswith(
        "(t, seeds) | 2 of 2 | < 0.0001 | holds (significant) |"
    )
    assert "| +1.00 | -5.25 |" in rows["QLoRA > LoRA"]
    assert rows["QLoRA > LoRA"].endswith("| 2 of 2 | < 0.0001 | reversed (significant) |")
    assert "| +1.00 | +0.15 | [+0.15, +0.15] (t, seeds) | 0 of 2 |" in rows["LoRA > IA3"]
    assert rows["LoRA > IA3"].endswith("same direction, not significant |")
    assert "| +3.00 | +4.65 |" in rows["Full > IA3"]

    # Without IA3 (and without the published rows the section is not shown at all).
    shutil.rmtree(out / "runs" / "ia3-seed1")
    shutil.rmtree(out / "runs" / "ia3-seed2")
    build_report([out], formats=("md",), reference=True, resamples=200)
    md = (out / "report.md").read_text()
    assert "holds (significant): 2; reversed (significant): 1; not compared: 3." in md
    assert "| not compared: ia3 has no successful run here |" in md
    build_report([out], formats=("md",), resamples=200)
    assert "orderings, tested here" not in (out / "report.md").read_text()


def test_a_search_choice_at_the_edge_of_its_grid_is_flagged(tmp_path: Path) -> None:
    out = tmp_path / "exp"
    grids = {  # label: (grid, chosen)
        "Full": ({"learning_rate": [2e-5, 5e-5, 1e-4]}, {"learning_rate": 1e-4}),
        "LoRA": (
            {"learning_rate": [5e-4, 2e-3, 5e-3], "r": [4, 8, 16]},
            {"learning_rate": 2e-3, "r": 4},
        ),
        "IA3": ({"learning_rate": [3e-3, 3e-2]}, {"learning_rate": 3e-2}),  # two values: no edge
    }
    for label, (grid, chosen) in grids.items():
        record = make_record(label, 0, 0.85)
        tried = [{"values": {k: v[0]}, "validation_accuracy": 0.8} for k, v in grid.items()]
        record["run_info"]["search"] = {"grid": grid, "tried": tried, "chosen": chosen}
        write(out, record)
    build_report([out], formats=("md",))
    md = (out / "report.md").read_text()
    assert "## Hyperparameter search" in md
    assert (
        "imdb-roberta / Full: learning_rate = 0.0001 is the largest value tried, so the best "
        "may lie beyond the grid; extend it past 0.0001 to be sure."
    ) in md
    assert "imdb-roberta / LoRA: r = 4 is the smallest value tried" in md
    assert "LoRA: learning_rate" not in md and "IA3: learning_rate" not in md


def test_runs_in_different_precisions_are_shown_and_warned_of(tmp_path: Path) -> None:
    out = tmp_path / "exp"
    for label, seed, precision in (
        ("Full", 0, "bf16"),
        ("LoRA", 0, "bf16"),
        ("LoRA", 1, "fp32"),  # resumed on a CPU without AVX-512 BF16 (precision: auto)
        ("IA3", 0, "fp32"),
    ):
        record = make_record(label, seed, 0.85)
        record["train_info"]["precision"] = precision
        write(out, record)
    build_report([out], formats=("md", "csv"))
    md = (out / "report.md").read_text()
    warning = (
        "imdb-roberta: the runs computed in different precisions (bf16: Full (1 run), LoRA "
        "(1 run); fp32: IA3 (1 run), LoRA (1 run)), so a difference between methods may come "
        "from precision as well as from the method."
    )
    assert warning in md
    assert md.index(warning) < md.index("## Results")  # right under the bottom line
    summary = md[md.index("## Results") :]
    assert "| precision |" in summary
    assert "| LoRA | 2 success | 2 | bf16, fp32 |" in summary
    rows = list(csv.DictReader(io.StringIO((out / "summary.csv").read_text())))
    # (without an experiment.yaml, methods come in label order: Full, IA3, LoRA)
    assert [row["precision"] for row in rows] == ["bf16", "fp32", "bf16", "fp32"]

    # One precision throughout: the column stays, the warning goes.
    for record_file in out.glob("runs/*/record.json"):
        record = json.loads(record_file.read_text())
        record["train_info"]["precision"] = "fp32"
        write_json_atomic(record_file, record)
    build_report([out], formats=("md",))
    md = (out / "report.md").read_text()
    assert "different precisions" not in md and "| LoRA | 2 success | 2 | fp32 |" in md


def test_resumed_runs_are_named_under_the_runs_table(tmp_path: Path) -> None:
    out = tmp_path / "exp"
    for seed in (0, 1):
        record = make_record("LoRA", seed, 0.85)
        record["train_info"]["resumed_from_epoch"] = 1 if seed else None
        write(out, record)
    build_report([out], formats=("md",))
    md = (out / "report.md").read_text()
    runs = md[md.index("## All runs") :]
    assert "Resumed from an epoch checkpoint: lora-seed1 (after epoch 1)." in runs
    assert "lora-seed0 (after" not in md
