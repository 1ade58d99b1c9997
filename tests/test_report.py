"""`build_report` end to end on hand-made run records: tables, plots, CSV, HTML, bad input."""

from __future__ import annotations

import csv
import io
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import matplotlib.image
import pytest
from PIL import Image

from peftbench.errors import PeftbenchError
from peftbench.report import ReportResult, build_report, load_runs, memory_key, summarize
from peftbench.results import SCHEMA_VERSION, record_path, write_json_atomic

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
PLOTS = (
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
        "report_runs.csv",
        "report_summary.csv",
    }
    md = (out / "report.md").read_text()
    assert "| imdb-roberta | LoRA | 3 success, 1 not successful | 3 | 88.50 ± 0.50 |" in md
    assert "| imdb-roberta | Full | 1 success | 1 | 89.00 |" in md
    assert "124,647,170" in md and "peak CUDA allocated (MB)" in md
    assert "![Accuracy vs trainable parameters](plots/accuracy_vs_trainable_params.png)" in md
    assert "| LoRA | lora-seed4 | 4 | failed | NonFiniteLoss: loss became nan at step 12 |" in md
    assert "**Most accurate:** Full, accuracy 89.00 %" in md
    assert "QLoRA, 2,500 MB against 7,746 MB for Full (-67.7 %)" in md
    assert "LoRA, 420.0 s against 1,140.0 s for Full" in md
    assert "seed-to-seed std: LoRA 0.50 pp" in md
    assert '"r": 8' in md and "H200" in md  # configuration and environment
    assert result.recommendations["imdb-roberta"][0].subjects == ("Full",)


def test_corrupt_and_old_schema_records_are_skipped(built: tuple[Path, ReportResult]) -> None:
    out, result = built
    assert any("broken-seed1" in m and "not valid JSON" in m for m in result.skipped)
    assert any("old-seed1" in m and "schema version 0" in m for m in result.skipped)
    assert any("seed 4: failed" in m and "excluded from the means" in m for m in result.skipped)
    assert len(result.skipped) == 3
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
    assert {p.name for p in result.files} == {"report_runs.csv", "report_summary.csv"}
    rows = list(csv.DictReader(io.StringIO((experiment / "report_runs.csv").read_text())))
    assert len(rows) == 7  # Full, LoRA x 3 + failed seed 4, QLoRA, IA3
    full = next(r for r in rows if r["label"] == "Full")
    assert float(full["accuracy"]) == 0.89 and full["trainable_params"] == "124647170"
    failed = next(r for r in rows if r["status"] == "failed")
    assert failed["error_type"] == "NonFiniteLoss"
    summary = list(csv.DictReader(io.StringIO((experiment / "report_summary.csv").read_text())))
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
    assert "| imdb-minilm-cpu | LoRA | 1 success | 1 | 81.00 |" in md
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
