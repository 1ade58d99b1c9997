"""The report as an answer: bottom line consistent with the tests, intervals on every accuracy
plot, no machine path in anything written, the one results table in the config's order."""

from __future__ import annotations

import csv
import html
import io
import math
import os
from pathlib import Path
from statistics import NormalDist

import pytest
import yaml
from matplotlib.container import ErrorbarContainer
from test_report import WRONG, make_record, write, write_experiment, write_with_predictions

from peftbench.report import ReportResult, build_report, load_runs, summarize, write_summary
from peftbench.report.paths import scrub, shown_path
from peftbench.report.plots import (
    accuracy_figure,
    learning_curves_figure,
    method_styles,
    scatter_figure,
)
from peftbench.report.power import examples_needed
from peftbench.report.runs import learning_curves
from peftbench.report.significance import Settings, run_statistics, with_intervals


@pytest.fixture(scope="module")
def tested(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ReportResult]:
    """Full 89.0 %, LoRA 88.5 % (Holm p = 0.0987: not distinguishable), IA3 85.0 %
    (significantly behind), one seed on 2,000 examples, with a config giving their order."""
    out = tmp_path_factory.mktemp("answer") / "exp"
    for label, wrong in WRONG.items():
        write_with_predictions(
            out, label, 1, wrong, time_s={"Full": 900, "LoRA": 300}.get(label, 200)
        )
    order = {"methods": [{"label": "IA3"}, {"label": "LoRA"}, {"label": "Full"}]}
    (out / "experiment.yaml").write_text(yaml.safe_dump(order), encoding="utf-8")
    return out, build_report([out], resamples=500)


def test_bottom_line_agrees_with_the_significance_table(tested: tuple[Path, ReportResult]) -> None:
    out, result = tested
    line = result.bottom_lines["imdb-roberta"]
    pairs = result.comparisons["imdb-roberta"]
    with_best = [p for p in pairs if line.best in (p.a, p.b)]
    other = [(p.b if p.a == line.best else p.a, p.significant) for p in with_best]
    assert line.best == "Full"
    assert line.tied == [name for name, significant in other if not significant] == ["LoRA"]
    assert line.behind == [name for name, significant in other if significant] == ["IA3"]
    rows = list(csv.DictReader(io.StringIO((out / "significance.csv").read_text())))
    assert line.real == sum(r["significant"] == "True" for r in rows) == 2
    assert line.compared == len(rows) == 3
    md = (out / "report.md").read_text()
    assert md.index("## Bottom line") < md.index("## Results") < md.index("## Statistical")
    paragraph = md.split("## Bottom line\n\n")[1].split("\n")[0]
    assert paragraph == line.text
    assert "no clear lead over LoRA (Holm-adjusted McNemar p = 0.0987)" in paragraph
    assert "Of the 3 pairwise differences, 2 are real" in paragraph
    assert "with 2,000 test examples and 1 seed(s) per method" in paragraph
    # The tie with LoRA is the group the cheaper choices come from: LoRA is faster (300 s).
    assert line.picks["train_time_s"] == "LoRA" and "by train time: LoRA (300.0 s" in paragraph
    # Samples to tell Full (89.0) from LoRA (88.5) apart, by hand: delta = 10/2000, psi =
    # 30/2000, alpha' = 0.05/3, power 0.8:
    # (2.3940 * 0.122474 + 0.841621 * 0.122372)^2 / 0.005^2 = 0.396199^2 / 2.5e-5 = 6279.
    z = NormalDist().inv_cdf
    by_hand = (z(1 - 0.05 / 6) * math.sqrt(0.015) + z(0.8) * math.sqrt(0.015 - 0.005**2)) ** 2
    assert math.ceil(by_hand / 0.005**2) == examples_needed(0.005, 0.015, 0.05, 3) == 6279
    assert "about 6,279 test examples per seed" in paragraph
    assert f'<p class="lead">{html.escape(line.text)}</p>' in (out / "report.html").read_text()


def test_one_results_table_in_config_order(tested: tuple[Path, ReportResult]) -> None:
    out, _ = tested
    summary = (out / "summary.md").read_text()
    assert summary in (out / "report.md").read_text()  # the report's "All runs" table
    rows = list(csv.DictReader(io.StringIO((out / "summary.csv").read_text())))
    assert [r["method"] for r in rows] == ["ia3", "lora", "full"]  # experiment.yaml's order
    md = (out / "report.md").read_text()
    results = md.split("## Results")[1].split("##")[0]
    assert results.index("| IA3 |") < results.index("| LoRA |") < results.index("| Full |")
    assert "eval time per evaluation (s)" in summary and "MFU (%)" not in summary  # not recorded
    assert float(rows[0]["eval_time_per_eval_s"]) == 5.0  # 10 s over 2 evaluations


def test_new_columns_read_from_the_record(tmp_path: Path) -> None:
    record = make_record("LoRA", 1, 0.9)
    record["train_info"]["eval_examples_per_s"] = 200.0
    record["train_info"]["flops"] = {"train_flops": 3.2e15, "mfu": 0.125}
    record["data_info"]["train_truncated_fraction"] = 0.44
    record["run_info"]["config"]["training"] = {"max_length": 256}
    write(tmp_path, record)
    build_report([tmp_path], formats=("md",))
    md = (tmp_path / "report.md").read_text()
    assert "| eval throughput (examples/s) | train FLOPs | MFU (%) |" in md
    assert "| 200.0 | 3.2e15 | 12.50 |" in md
    assert "44.0 % of train examples truncated at max_length 256 tokens" in md


def test_no_machine_path_in_any_written_file(tmp_path: Path) -> None:
    runs = tmp_path / "results" / "exp"
    write_experiment(runs)
    record = make_record("Prefix", 1, 0.5, status="failed")
    record["error"]["message"] = f"cannot open {tmp_path}/cache/data.pt: disk full"
    record["run_info"]["config"]["output_dir"] = str(runs.resolve())
    write(runs, record)
    full = make_record("Full", 1, 0.89, params=124_647_170, time_s=1140, cuda_mb=7746)
    full["data_info"]["source"] = str(tmp_path / "shared" / "data" / "imdb")
    write(runs, full)
    out = tmp_path / "report"
    result = build_report([runs.resolve()], out_dir=out.resolve(), reference=True)
    write_summary(out, [r.record for r in load_runs([runs])[0]])
    machine = {str(tmp_path), str(tmp_path.resolve()), str(Path.home()), os.getcwd()}
    written = [p for p in out.rglob("*") if p.is_file() and p.suffix != ".png"]
    assert {p.name for p in written} >= {"report.md", "report.html", "summary.csv"}
    assert len(written) >= len(result.files) // 2
    for path in written:
        text = path.read_text(encoding="utf-8")
        found = [m for m in machine if m in text]
        assert not found, f"{path.name} names {found}"
    md = (out / "report.md").read_text()
    assert "…/data/imdb" in md and "cannot open …/cache/data.pt: disk full" in md


def test_paths_as_written_or_relative(tmp_path: Path) -> None:
    out = tmp_path / "report"
    assert shown_path("results/exp", out) == "results/exp"  # as the user wrote it
    assert shown_path(out / "plots" / "a.png", out) == "plots/a.png"
    assert shown_path(Path.cwd() / "results" / "x", out) == "results/x"
    assert shown_path("/somewhere/else/data/imdb", out) == "…/data/imdb"
    text = "read /somewhere/else/data/imdb at 500 tokens/s, see https://example.org/a/b"
    assert scrub(text, out) == "read …/data/imdb at 500 tokens/s, see https://example.org/a/b"


def _stats(out: Path):
    runs, _ = load_runs([out])
    statistics = run_statistics(runs, Settings(resamples=300))
    return runs, with_intervals(summarize(runs), statistics)


def _yerr(container: ErrorbarContainer) -> list[tuple[float, float]]:
    """(low, high) of each vertical error bar in a container."""
    _, _, bars = container.lines
    return [(segment[0][1], segment[1][1]) for segment in bars[0].get_segments()]


def test_every_accuracy_plot_carries_intervals(tested: tuple[Path, ReportResult]) -> None:
    out, result = tested
    runs, stats = _stats(out)
    line = result.bottom_lines["imdb-roberta"]
    groups = {"imdb-roberta": {line.best, *line.tied}}
    figure = scatter_figure(stats, "train_time_s", groups)
    containers = [c for c in figure.axes[0].containers if isinstance(c, ErrorbarContainer)]
    assert len(containers) == 3 and all(c.has_yerr for c in containers)
    for container, s in zip(containers, stats, strict=True):
        low, high = s.accuracy_interval  # the run's bootstrap CI
        assert s.interval_kind == "95 % bootstrap CI"
        assert _yerr(container) == [pytest.approx((100 * low, 100 * high))]
    assert figure.axes[0].patches, "the best group is drawn as a shaded band"
    labels = [t.get_text() for t in figure.legends[0].get_texts()]
    assert labels[:3] == ["IA3", "LoRA", "Full"] and not figure.axes[0].texts  # no point labels
    forest = accuracy_figure(stats, groups)
    assert all(c.has_xerr for c in forest.axes[0].containers)
    # One seed per epoch: the learning curves use the binomial interval on 2,000 examples.
    curves_figure, kinds = learning_curves_figure(learning_curves(runs, stats))
    assert kinds == "95 % normal binomial interval on the test examples"
    full = next(c for c in curves_figure.axes[0].containers if c.get_label() == "Full")
    accuracy = 0.89  # last epoch
    half = 100 * 1.96 * math.sqrt(accuracy * (1 - accuracy) / 2000)
    low, high = _yerr(full)[-1]
    assert (high - low) / 2 == pytest.approx(half, rel=1e-3)


def test_sixteen_and_more_methods_look_different() -> None:
    names = [f"method{i}" for i in range(21)]
    styles = method_styles(names)
    assert len(set(styles.values())) == 21
    assert len({colour for colour, _ in list(styles.values())[:20]}) == 20
    assert len({marker for _, marker in styles.values()}) == 21


def test_one_method_with_results_has_nothing_to_be_compared_with(tmp_path: Path) -> None:
    out = tmp_path / "exp"
    write_with_predictions(out, "Full", 1, set(range(200)))  # 90 %
    write(out, make_record("LoRA", 1, 0.5, status="canceled"))  # a stopped benchmark's run
    result = build_report([out], formats=("md",), resamples=200)
    text = result.bottom_lines["imdb-roberta"].text
    assert (
        text == "Only Full has an accuracy (90.00 %): there is no other method to compare it with."
    )
