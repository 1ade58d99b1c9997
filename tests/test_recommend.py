"""Pareto front, rankings and recommendations checked against values worked out by hand."""

from __future__ import annotations

import math
from statistics import NormalDist

import pytest

from peftbench.report.bottom_line import bottom_line
from peftbench.report.document import comparison_rows
from peftbench.report.power import examples_needed
from peftbench.report.ranking import join_words
from peftbench.report.recommend import (
    MethodStats,
    accuracy_noise,
    best_group,
    binomial_half_width,
    cheapest_within,
    dominates,
    failure_warnings,
    most_accurate,
    noise_warnings,
    pareto_front,
    rank,
    recommend,
)
from peftbench.report.significance import PairComparison, SeedComparison
from peftbench.stats import McNemar, PairedBootstrap, mcnemar_p

MEM = "cuda_peak_allocated_mb"


def method(
    name: str, accuracy: float, params: int, mem: float, time: float, size: float, **kwargs
) -> MethodStats:
    """A measured method with one seed on 1,000 test examples unless told otherwise."""
    mean = {
        "accuracy": accuracy,
        "trainable_params": params,
        MEM: mem,
        "train_time_s": time,
        "model_size_mb": size,
    }
    return MethodStats(
        name=name,
        n_seeds=kwargs.pop("n_seeds", 1),
        test_size=kwargs.pop("test_size", 1000),
        mean=mean,
        label=name,
        **kwargs,
    )


@pytest.fixture
def four() -> list[MethodStats]:
    """Full is the most accurate; LoRA and QLoRA are within 1 pp of it, IA3 is 3 pp behind."""
    return [
        method("Full", 0.89, 124_647_170, 7746, 1140, 475.0),
        method("LoRA", 0.885, 887_042, 4120, 420, 3.4),
        method("QLoRA", 0.88, 887_042, 2500, 600, 3.5),
        method("IA3", 0.86, 656_642, 3900, 400, 2.6),
    ]


def points(stats: list[MethodStats]) -> dict[str, dict[str, float]]:
    return {s.name: s.mean for s in stats}


def test_rank_follows_column_direction(four: list[MethodStats]) -> None:
    assert rank(points(four), "accuracy") == ["Full", "LoRA", "QLoRA", "IA3"]
    assert rank(points(four), MEM) == ["QLoRA", "IA3", "LoRA", "Full"]
    assert rank(points(four), "train_time_s") == ["IA3", "LoRA", "QLoRA", "Full"]
    tokens = {"a": {"train_tokens_per_s": 10.0}, "b": {"train_tokens_per_s": 30.0}, "c": {}}
    assert rank(tokens, "train_tokens_per_s") == ["b", "a"]


def test_pareto_front_accuracy_vs_params(four: list[MethodStats]) -> None:
    # QLoRA has LoRA's parameter count and lower accuracy: dominated. IA3 has the fewest params.
    assert pareto_front(points(four), ["accuracy", "trainable_params"]) == ["Full", "LoRA", "IA3"]


def test_pareto_front_accuracy_vs_memory(four: list[MethodStats]) -> None:
    # QLoRA uses less memory than IA3 and is more accurate: IA3 is dominated.
    assert pareto_front(points(four), ["accuracy", MEM]) == ["Full", "LoRA", "QLoRA"]


def test_pareto_front_ties_and_missing_values() -> None:
    pts = {
        "a": {"accuracy": 0.9, MEM: 10.0},
        "b": {"accuracy": 0.9, MEM: 10.0},
        "c": {"accuracy": 0.95, MEM: None},
    }
    assert pareto_front(pts, ["accuracy", MEM]) == ["a", "b"]  # equal points do not dominate
    assert not dominates(
        {"accuracy": 0.9, MEM: 10.0}, {"accuracy": 0.9, MEM: 10.0}, ["accuracy", MEM]
    )
    assert dominates({"accuracy": 0.9, MEM: 9.0}, {"accuracy": 0.9, MEM: 10.0}, ["accuracy", MEM])


def test_pareto_front_refuses_non_figures() -> None:
    with pytest.raises(ValueError, match="not a figure"):
        pareto_front({"a": {"seed": 1, "accuracy": 0.5}}, ["accuracy", "seed"])


def test_join_words_reads_as_a_sentence() -> None:
    assert join_words([]) == ""
    assert join_words(["lora"]) == "lora"
    assert join_words(["lora", "ia3"]) == "lora and ia3"
    assert join_words(["full", "lora", "ia3"]) == "full, lora and ia3"


def test_binomial_half_width_by_hand() -> None:
    # 1.96 * sqrt(0.89 * 0.11 / 1000) = 1.96 * sqrt(9.79e-5) = 1.96 * 0.0098944 = 0.019393
    assert binomial_half_width(0.89, 1000) == pytest.approx(0.019393, abs=1e-6)
    assert binomial_half_width(0.5, 100) == pytest.approx(0.098)
    assert binomial_half_width(1.0, 50) == 0.0
    with pytest.raises(ValueError):
        binomial_half_width(0.5, 0)


def test_accuracy_noise_takes_the_larger_of_binomial_and_seed_std() -> None:
    one_seed = method("a", 0.5, 1, 1, 1, 1, test_size=100)
    assert accuracy_noise(one_seed) == pytest.approx(0.098)
    seeds = method("b", 0.5, 1, 1, 1, 1, test_size=100, n_seeds=3, std={"accuracy": 0.15})
    assert accuracy_noise(seeds) == pytest.approx(0.15)
    quiet = method("c", 0.5, 1, 1, 1, 1, test_size=100, n_seeds=3, std={"accuracy": 0.01})
    assert accuracy_noise(quiet) == pytest.approx(0.098)


def test_cheapest_picks_come_from_the_best_group(four: list[MethodStats]) -> None:
    # Noise rule (no paired tests): LoRA (0.5 pp behind) and QLoRA (1.0 pp) are within the
    # ~2 pp binomial noise of Full and form its group; IA3 (3.0 pp > 2.15 pp) does not.
    group = best_group(four)
    assert [s.name for s in group] == ["Full", "LoRA", "QLoRA"]
    assert cheapest_within(group, MEM).name == "QLoRA"  # 2,500 MiB
    assert cheapest_within(group, "train_time_s").name == "LoRA"  # 420 s; IA3 (400 s) is out
    assert cheapest_within(group, "model_size_mb").name == "LoRA"  # 3.4 MiB < 3.5 MiB
    # IA3 not distinguishable from Full (paired test, Holm p = 0.06): it joins the group and,
    # being the fastest, is the time pick: the rule that ties it to the best keeps it.
    comparisons = [paired("Full", "IA3", (40, 10, 0.06))]
    group = best_group(four, comparisons)
    assert [s.name for s in group] == ["Full", "LoRA", "QLoRA", "IA3"]
    assert cheapest_within(group, "train_time_s").name == "IA3"
    recs = recommend(four, memory_key=MEM, comparisons=comparisons)
    assert "IA3" in recs[0].figures["tied_with"]
    time = next(r for r in recs if r.headline == "Cheapest by train time among the best group")
    assert time.subjects[0] == "IA3" and "not distinguishable (Holm-adjusted" in time.text


def test_a_cheaper_method_is_found_behind_one_tied_with_the_best_by_its_noise() -> None:
    # X (900 MiB) is tied with Best (1,000) by its own seed-to-seed std (150); Y (950, no
    # spread) is 50 MiB cheaper than Best, beyond the 10 MiB floor: Y is the cheaper pick.
    best = method("Best", 0.90, 1, 1000, 1, 1, std={MEM: 0.0})
    x = method("X", 0.90, 1, 900, 1, 1, std={MEM: 150.0})
    y = method("Y", 0.90, 1, 950, 1, 1, std={MEM: 0.0})
    assert cheapest_within([best, x, y], MEM, best) is y
    assert cheapest_within([best, x], MEM, best) is best  # only X is cheaper, within noise


def test_recommendations_cite_their_figures(four: list[MethodStats]) -> None:
    recs = recommend(four, memory_key=MEM)
    best = next(r for r in recs if r.kind == "best")
    assert best.subjects == ("Full",)
    assert "89.00 %" in best.text and "n = 1,000 test examples" in best.text
    cheap = {r.headline: r for r in recs if r.kind == "cheapest"}
    memory = cheap["Cheapest by peak CUDA allocated among the best group"]
    assert memory.subjects[0] == "QLoRA"
    assert "2,500 MiB" in memory.text and "7,746 MiB" in memory.text
    # (2500 - 7746) / 7746 = -67.7 %
    assert memory.figures["relative_change"] == pytest.approx(-0.67725, abs=1e-5)
    assert "-67.7 %" in memory.text and "1.00 pp below" in memory.text
    time = cheap["Cheapest by train time among the best group"]
    assert time.subjects[0] == "LoRA" and "420.0 s" in time.text and "1,140.0 s" in time.text
    size = cheap["Cheapest by adapter/model size on disk among the best group"]
    assert size.subjects[0] == "LoRA" and "3.40 MiB" in size.text
    pareto = {r.headline: r for r in recs if r.kind == "pareto"}
    assert pareto["Pareto-optimal, accuracy vs trainable params"].subjects == (
        "Full",
        "LoRA",
        "IA3",
    )
    assert "Dominated" in pareto["Pareto-optimal, accuracy vs trainable params"].text
    assert pareto["Pareto-optimal, accuracy vs peak CUDA allocated"].subjects == (
        "Full",
        "LoRA",
        "QLoRA",
    )
    assert any(r.kind == "note" and "one seed" in r.text for r in recs)


def test_noise_warnings_by_hand(four: list[MethodStats]) -> None:
    # Noise = the larger half-width of the pair: Full 1.96 * sqrt(.89 * .11 / 1000) = 1.94 pp,
    # LoRA 1.96 * sqrt(.885 * .115 / 1000) = 1.96 * 0.0100884 = 1.98 pp,
    # IA3 1.96 * sqrt(.86 * .14 / 1000) = 2.15 pp.
    # Gaps to Full: LoRA 0.5 pp and QLoRA 1.0 pp are inside; IA3's 3.0 pp is not.
    warnings = noise_warnings(four)
    assert [w.subjects for w in warnings] == [("Full", "LoRA"), ("Full", "QLoRA")]
    assert warnings[0].figures["gap"] == pytest.approx(0.005)
    assert warnings[0].figures["noise"] == pytest.approx(0.019773, abs=1e-6)
    assert "±1.98 pp" in warnings[0].text and "n = 1,000 test examples" in warnings[0].text
    ia3 = 1.96 * math.sqrt(0.86 * 0.14 / 1000)
    assert ia3 == pytest.approx(0.021507, abs=1e-6) and 0.03 > ia3


def test_noise_warning_uses_seed_std() -> None:
    # Binomial half-width on 10,000 examples is ~0.6 pp; the seed std of 2 pp makes 1.5 pp noise.
    a = method("A", 0.90, 1, 1, 1, 1, test_size=10_000, n_seeds=3, std={"accuracy": 0.02})
    b = method("B", 0.885, 1, 1, 1, 1, test_size=10_000)
    assert binomial_half_width(0.9, 10_000) < 0.015
    assert [w.subjects for w in noise_warnings([a, b])] == [("A", "B")]
    assert noise_warnings([method("A", 0.90, 1, 1, 1, 1, test_size=10_000), b]) == []


def test_failures_are_reported_and_failed_methods_ignored(four: list[MethodStats]) -> None:
    broken = MethodStats(name="Prefix", n_seeds=0, failures=["seed 1: failed — NaN loss"])
    partial = method("LoRA2", 0.87, 1, 1, 1, 1, n_seeds=2, failures=["seed 3: canceled"])
    recs = recommend([*four, broken, partial], memory_key=MEM)
    failures = failure_warnings([broken, partial])
    assert [f.subjects for f in failures] == [("Prefix",), ("LoRA2",)]
    assert "1 of 1 run(s) did not succeed" in failures[0].text and "NaN loss" in failures[0].text
    assert "1 of 3 run(s)" in failures[1].text and "excluded from the means" in failures[1].text
    assert most_accurate([broken]) is None
    assert [r.subjects for r in recs if r.kind == "failure"] == [("Prefix",), ("LoRA2",)]


def test_reference_rows_never_drive_recommendations(four: list[MethodStats]) -> None:
    published = method("Full (published)", 0.99, 1, 1, 1, 1, reference=True)
    recs = recommend([*four, published], memory_key=MEM)
    assert next(r for r in recs if r.kind == "best").subjects == ("Full",)
    assert all("published" not in s for r in recs for s in r.subjects)


# ----- paired tests decide where they exist -----


def paired(a: str, b: str, *seeds: tuple[int, int, float]) -> PairComparison:
    """A against B on 1,000 examples; each seed as (only A right, only B right, Holm p)."""
    comparisons = []
    for seed, (only_a, only_b, holm_p) in enumerate(seeds, 1):
        diff = (only_a - only_b) / 1000
        comparisons.append(
            SeedComparison(
                seed,
                f"{a}-seed{seed}",
                f"{b}-seed{seed}",
                1000,
                McNemar(only_a, only_b, mcnemar_p(only_a, only_b)),
                PairedBootstrap(diff, diff - 0.01, diff + 0.01, 0.95, 0.5, 1000),
                holm_p,
                holm_p <= 0.05,
            )
        )
    return PairComparison("exp", a, b, comparisons)


def test_paired_tests_override_the_noise_rule(four: list[MethodStats]) -> None:
    # Full vs LoRA: 0.5 pp, Holm p = 0.55: tied (the noise rule agrees).
    # Full vs QLoRA: 1.0 pp, Holm p = 0.04: significant, though within binomial noise (1.98 pp).
    # Full vs IA3: no paired test: the noise rule finds 3 pp > 2.15 pp noise, so no finding.
    comparisons = [paired("Full", "LoRA", (15, 10, 0.55)), paired("Full", "QLoRA", (15, 5, 0.04))]
    recs = recommend(four, memory_key=MEM, comparisons=comparisons)
    best = recs[0]
    assert best.kind == "best" and best.headline == "Highest accuracy, no clear lead"
    assert "not distinguishable from LoRA (Holm-adjusted McNemar p = 0.5500)" in (best.text)
    assert best.figures["tied_with"] == ["LoRA"]
    findings = {r.subjects: r for r in recs if r.kind in ("noise", "significant")}
    assert set(findings) == {("Full", "LoRA"), ("Full", "QLoRA")}
    lora = findings[("Full", "LoRA")]
    assert lora.headline == "Not distinguishable" and "not distinguishable at α = 0.05" in lora.text
    # McNemar exact p for 15 / 10: 2 P(X <= 10 | 25, 1/2) = 0.4244
    assert f"McNemar exact p = {mcnemar_p(15, 10):.4f}" in lora.text
    assert mcnemar_p(15, 10) == pytest.approx(0.4244, abs=1e-4)
    assert "Holm-adjusted p = 0.5500" in lora.text and "+0.50 pp" in lora.text
    qlora = findings[("Full", "QLoRA")]
    assert qlora.kind == "significant"
    assert qlora.text.startswith("Full is more accurate than QLoRA: +1.00 pp")
    assert "Holm-adjusted p = 0.0400" in qlora.text
    # QLoRA is significantly behind Full, so it is no cheaper choice for it: the memory pick
    # comes from the best group (Full, LoRA), the same methods the best is tied with.
    memory = next(r for r in recs if r.kind == "cheapest" and r.figures.get(MEM))
    assert memory.subjects[0] == "LoRA"
    assert "not distinguishable (Holm-adjusted McNemar p = 0.5500)." in memory.text


def test_most_accurate_only_with_a_significant_lead(four: list[MethodStats]) -> None:
    three = four[:3]
    comparisons = [
        paired("Full", "LoRA", (25, 5, 0.001)),
        paired("Full", "QLoRA", (15, 5, 0.03)),
    ]
    recs = recommend(three, memory_key=MEM, comparisons=comparisons)
    assert recs[0].headline == "Most accurate" and "tied_with" not in recs[0].figures
    findings = [r.subjects for r in recs if r.kind == "significant"]
    assert findings == [("Full", "LoRA"), ("Full", "QLoRA")]
    assert not any(r.kind == "noise" for r in recs)


def test_several_seeds_must_all_be_significant(four: list[MethodStats]) -> None:
    comparisons = [paired("Full", "LoRA", (30, 0, 0.001), (30, 0, 0.001), (5, 5, 1.0))]
    recs = noise_warnings(four[:2], comparisons)
    assert len(recs) == 1 and recs[0].kind == "noise"
    assert "+2.00 pp on average over 3 seeds" in recs[0].text
    assert "significant in 2 of 3 seeds; largest Holm-adjusted McNemar p = 1.0000" in recs[0].text
    # Every seed must find it: each seed's test is sized for 0.8 ** (1/3) = 0.928 power, at
    # alpha' = 0.05 / 3 (three seed comparisons), delta = 0.02, psi = 70/3000.
    z = NormalDist().inv_cdf
    psi = 70 / 3000
    root = z(1 - 0.05 / 6) * math.sqrt(psi) + z(0.8 ** (1 / 3)) * math.sqrt(psi - 0.02**2)
    needed = math.ceil(root**2 / 0.02**2)
    assert needed == examples_needed(0.02, psi, 0.05, 3, seeds=3) == 863
    assert needed > examples_needed(0.02, psi, 0.05, 3)  # 80 % per seed: 679
    assert f"about {needed:,} test examples per seed" in recs[0].text
    assert "80 % power that all 3 seeds find it" in recs[0].text
    all_three = [paired("Full", "LoRA", (30, 0, 0.001), (30, 0, 0.001), (25, 0, 0.002))]
    assert noise_warnings(four[:2], all_three)[0].kind == "significant"


def test_a_miss_is_put_down_to_the_correction_or_to_the_interval_as_it_is(
    four: list[MethodStats],
) -> None:
    # Full vs LoRA: McNemar p = 0.0022 alone, Holm p = 0.08 over the experiment's two pairs.
    # Full vs QLoRA: the bootstrap interval (+0.10 to +2.10 pp) excludes 0, but McNemar's
    # exact p is 0.061 before any correction: the correction is not why it misses.
    comparisons = [paired("Full", "LoRA", (30, 10, 0.08)), paired("Full", "QLoRA", (20, 9, 0.12))]
    texts = {r.subjects[1]: r.text for r in noise_warnings(four[:3], comparisons)}
    assert "would count for this pair alone (p = 0.0022)" in texts["LoRA"]
    assert "across all 2 comparisons of the experiment (Holm), and does not" in texts["LoRA"]
    assert "bootstrap interval excludes zero, but McNemar's exact test" in texts["QLoRA"]
    assert "Holm" not in texts["QLoRA"].split("Its paired bootstrap")[1]
    _, rows = comparison_rows(comparisons, several=False, alpha=0.05)
    assert [row[-1] for row in rows] == [
        "no (significant before correction)",
        "no (CI excludes 0, McNemar does not)",
    ]


def test_a_reversed_significant_pair_is_no_winner(four: list[MethodStats]) -> None:
    # Full has the higher mean over all seeds, but on the one seed both ran LoRA won clearly.
    comparisons = [paired("LoRA", "Full", (40, 5, 0.0001))]
    recs = recommend(four[:2], memory_key=MEM, comparisons=comparisons)
    finding = next(r for r in recs if r.subjects == ("Full", "LoRA") and r.kind == "noise")
    assert finding.headline == "Inconsistent across seeds"
    assert "LoRA is significantly more accurate (+3.50 pp" in finding.text
    assert recs[0].headline == "Highest accuracy, no clear lead"
    assert "LoRA (significantly more accurate on the seeds both ran)" in recs[0].text
    # The cheaper pick and the bottom line say the same, never "not distinguishable", and
    # ask for no more test examples: the pair is already told apart.
    memory = next(r for r in recs if r.kind == "cheapest" and MEM in r.figures)
    assert memory.subjects[0] == "LoRA" and "not distinguishable" not in memory.text
    assert "no clear winner, LoRA being significantly more accurate on the seeds" in memory.text
    line = bottom_line("exp", four[:2], recs, comparisons, MEM).text
    assert "no clear lead over LoRA (significantly more accurate on the seeds both ran)" in line
    assert "not distinguishable" not in line and "would take about" not in line
