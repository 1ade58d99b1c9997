"""Is the fast default pipeline as accurate as the study's? (issue 11, part 2)

Full fine-tuning and LoRA on MiniLM, IMDb 2,000 train / 1,000 test reviews, max length 256,
2 epochs, the learning rates of configs/imdb-minilm-cpu.yaml, six seeds, each run once with the
default pipeline and once with `training.pipeline: reference` (padded to max length, fp32, no
length grouping, the model's attention dropout). Same seed = same subsets, same head
initialisation and same epoch orders for both pipelines, so the runs pair by seed.

    PEFTBENCH_DATA_DIR=../shared/data .venv/bin/python benchmarks/pipeline_equivalence.py
    ... pipeline_equivalence.py --analyse-only     # only rewrite the result file
    ... pipeline_equivalence.py --ablate training.precision=fp32 --methods full
    ... pipeline_equivalence.py --ablate training.precision=fp32 \
            --ablate training.attention_dropout=model --methods lora

`--ablate KEY=VALUE` trains a third arm, the default pipeline with that switch set as the
reference sets it, for the same seeds (default and reference runs are reused, not retrained):
the result then shows, per method, the arm against the reference (is it equivalent?) and against
the default (what the switch costs or gains), paired by seed. Several `--ablate` make one arm
with all those switches; it is also shown against each arm that lacks only one of them (what
that switch costs or gains on top of the others). Each ablation is its own arm, kept like the
others, so ablations from several sessions add up.

Every run trains on one thread (`training.num_threads=1`), and `--parallel` seeds (default 2,
one per core) train at once, each pipeline's in turn: the two pipelines of a seed see the same
load, so their time ratio stays fair, and the hours-long benchmark uses both cores.

Restartable: runs finished earlier are kept (the seeds go a group at a time, both pipelines
each, so an interrupted benchmark still has complete pairs). After each group the finished
runs' records and predictions are copied (machine paths removed) to
benchmarks/results/pipeline-equivalence-runs/, and a later start copies them back, so the
benchmark resumes in a fresh checkout too. Writes
benchmarks/results/pipeline-equivalence-cpu-<date>.md: accuracy per seed and pipeline, the
paired difference (default - reference) per method with its 95% t interval over seeds and a
TOST equivalence test against +-1.0 pp, the seed-to-seed spread of each pipeline, McNemar's
exact test per seed, and the training-time ratio of the same runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from peftbench_process import peftbench_run
from provenance import shown_command
from run_copies import auto_precisions, copy_runs, restore_runs
from scipy import stats as scipy_stats

from peftbench import stats
from peftbench.config import load_config
from peftbench.measure import describe_machine
from peftbench.preflight import auto_precision_here
from peftbench.results import load_records, predictions_path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
OUTPUT = ROOT / "results" / "pipeline-equivalence"
KEPT = RESULTS / "pipeline-equivalence-runs"  # committed copies of the finished runs
CONFIG = "configs/imdb-minilm-cpu.yaml"
WORKLOAD = [
    "data.train_size=2000",
    "data.test_size=1000",
    "training.epochs=2",
    "training.num_threads=1",
]
LEARNING_RATES = {"full": 5.0e-5, "lora": 2.0e-3}
PIPELINES = ("default", "reference")
ABLATION_PREFIX = "default+"  # an ablation arm's name: default+<key>=<value>[+<key>=<value>]
MARGIN_PP = 1.0  # equivalence margin of the issue


def ablation_arm(switches: list[str]) -> str:
    """The arm of the default pipeline with these switches (KEY=VALUE) changed."""
    return ABLATION_PREFIX + "+".join(switches)


def switches_of(arm: str) -> list[str]:
    """The switches (KEY=VALUE) an ablation arm changes; none for a pipeline."""
    return arm.removeprefix(ABLATION_PREFIX).split("+") if arm.startswith(ABLATION_PREFIX) else []


def arm_overrides(arm: str) -> list[str]:
    """The overrides that make an arm: a pipeline, or the default with switches changed."""
    if arm.startswith(ABLATION_PREFIX):
        return ["training.pipeline=default", *switches_of(arm)]
    return [f"training.pipeline={arm}"]


def one_switch_less(arm: str, arms: list[str]) -> list[str]:
    """The arms among `arms` that change all of this arm's switches but one (the default for
    a one-switch arm is not among them: it is compared anyway)."""
    switches = set(switches_of(arm))
    return [
        other
        for other in arms
        if len(switches_of(other)) == len(switches) - 1 > 0 and set(switches_of(other)) < switches
    ]


def precision_mismatch(switches: list[str]) -> str | None:
    """Why an ablation arm trained here would differ from the default arm in precision too
    (`precision: auto` resolved on another kind of CPU for the default's runs), or None."""
    if any(switch.startswith("training.precision=") for switch in switches):
        return None
    here = auto_precision_here(load_config(CONFIG, WORKLOAD).training)[0]
    default = auto_precisions(OUTPUT / "default")
    if not default or default == {here}:
        return None
    return (
        f"--ablate {' '.join(switches)}: the default arm's runs computed in "
        f"{', '.join(sorted(default))} "
        f"(precision: auto) and this machine would train the ablation in {here}, so the arm "
        "would differ from the default in precision as well; run it on a machine where auto "
        "resolves as it did for the default arm, or add --ablate training.precision=<one> and "
        "compare with that precision's arm"
    )


def run_seeds(arms: list[str], methods: list[str], seeds: list[int]) -> int:
    """Each arm for these seeds in turn, the seeds' runs in parallel (one thread each)."""
    chosen = {m: {"learning_rate": LEARNING_RATES[m]} for m in methods}
    code = 0
    for arm in arms:
        arguments = [
            *(f"methods={json.dumps(chosen)}", *WORKLOAD),
            *arm_overrides(arm),
            f"output_dir={OUTPUT / arm}",
            *("--seeds", ",".join(map(str, seeds)), "--parallel", str(len(seeds))),
        ]
        code = max(code, peftbench_run(CONFIG, arguments))
    return code


def keep_runs(arms: list[str]) -> None:
    """Copy the successful runs' records and predictions, machine paths removed, to KEPT."""
    for arm in arms:
        copy_runs(OUTPUT / arm, KEPT / arm, only_successful=True)


def load(arm: str) -> dict[tuple[str, int], dict]:
    """(method, seed) -> accuracy, train time, labels and predictions of successful runs."""
    directory = OUTPUT / arm
    runs = {}
    for record in load_records(directory)[0]:
        if record["status"] != "success":
            continue
        predictions = json.loads(predictions_path(directory, record["run_id"]).read_text())
        key = (record["run_info"]["method"], record["run_info"]["seed"])
        runs[key] = {
            "accuracy": 100 * record["metrics"]["accuracy"],
            "train_s": record["train_info"]["train_time_s"],
            "labels": predictions["labels"],
            "predictions": predictions["predictions"],
            "precision": record["train_info"].get("precision"),
        }
    return runs


def seeds_of(runs: dict[tuple[str, int], dict], method: str) -> list[int]:
    """The seeds an arm's loaded runs have for one method, in order."""
    return sorted(seed for m, seed in runs if m == method)


def tost_p(differences: np.ndarray, margin: float) -> float:
    """Two one-sided t tests of H0: |mean difference| >= margin; equivalence when p < alpha."""
    n = differences.size
    mean, se = differences.mean(), differences.std(ddof=1) / np.sqrt(n)
    p_low = scipy_stats.t.sf((mean + margin) / se, n - 1)  # H0: mean <= -margin
    p_high = scipy_stats.t.cdf((mean - margin) / se, n - 1)  # H0: mean >= +margin
    return float(max(p_low, p_high))


def comparison(method: str, arms: dict[str, dict], a: str, b: str, verdict: bool) -> list[str]:
    """Arm a against arm b for one method, paired by seed: per-seed accuracies, McNemar's
    test, the mean difference (a - b) with its 95% t interval, TOST against the margin, each
    arm's seed-to-seed spread and the training-time ratio of the same runs. With `verdict`,
    whether a is shown equivalent to b (and not worse than it)."""
    runs_a, runs_b = arms[a], arms[b]
    seeds = [s for s in seeds_of(runs_a, method) if (method, s) in runs_b]
    lines = [
        f"### {method}: {a} vs {b}",
        "",
        f"| seed | {a} (%) | {b} (%) | difference (pp) | McNemar p | train s {a} / {b} |",
        "| ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for seed in seeds:
        x, y = runs_a[(method, seed)], runs_b[(method, seed)]
        p = stats.mcnemar_exact(y["labels"], y["predictions"], x["predictions"]).p_value
        lines.append(
            f"| {seed} | {x['accuracy']:.1f} | {y['accuracy']:.1f} | "
            f"{x['accuracy'] - y['accuracy']:+.1f} | {p:.3f} | "
            f"{x['train_s']:.0f} / {y['train_s']:.0f} |"
        )
    if len(seeds) < 2:
        return [*lines, "", f"{len(seeds)} complete pair(s): too few for an interval.", ""]
    diffs = np.array(
        [runs_a[(method, s)]["accuracy"] - runs_b[(method, s)]["accuracy"] for s in seeds]
    )
    interval = stats.seed_interval(diffs.tolist())
    spread = {
        name: np.std([arms[name][(method, s)]["accuracy"] for s in seeds], ddof=1)
        for name in (a, b)
    }
    speed = sum(runs_b[(method, s)]["train_s"] for s in seeds) / sum(
        runs_a[(method, s)]["train_s"] for s in seeds
    )
    # Robust to a few seeds whose runs shared the machine with other work.
    median_speed = np.median(
        [runs_b[(method, s)]["train_s"] / runs_a[(method, s)]["train_s"] for s in seeds]
    )
    lines += [
        "",
        f"- mean paired difference ({a} - {b}) over {len(seeds)} seeds: "
        f"{interval.estimate:+.2f} pp, 95% t interval [{interval.low:+.2f}, {interval.high:+.2f}]"
        f" pp; TOST against +-{MARGIN_PP:.1f} pp: p = {tost_p(diffs, MARGIN_PP):.3f}",
    ]
    if verdict:
        equivalent = -MARGIN_PP < interval.low and interval.high < MARGIN_PP
        not_worse = -MARGIN_PP < interval.low
        lines += [
            f"- equivalent (95% interval inside +-{MARGIN_PP:.1f} pp): "
            f"**{'yes' if equivalent else 'NOT shown'}**; loses less than {MARGIN_PP:.1f} pp "
            f"(non-inferiority, lower bound above -{MARGIN_PP:.1f} pp): "
            f"**{'yes' if not_worse else 'NOT shown'}**",
        ]
    return [
        *lines,
        f"- seed-to-seed spread (SD of accuracy): {a} {spread[a]:.2f} pp, {b} {spread[b]:.2f} pp",
        f"- training time, {b} / {a}, same runs: {speed:.2f}x in total, median per seed "
        f"{median_speed:.2f}x",
        "",
    ]


def ablation_arms() -> list[str]:
    """The ablation arms run so far (here or in a committed copy)."""
    names = {d.name for base in (OUTPUT, KEPT) if base.is_dir() for d in base.iterdir()}
    return sorted(n for n in names if n.startswith(ABLATION_PREFIX))


def write_result(seeds: list[int], elapsed: float | None, notes: list[str]) -> Path:
    ablations = ablation_arms()
    arms = {arm: load(arm) for arm in [*PIPELINES, *ablations]}
    now = datetime.now(UTC)
    precision = {r["precision"] for r in arms["default"].values()} or {"?"}
    learning_rates = ", ".join(
        f"{method} {np.format_float_scientific(rate, trim='-', exp_digits=1)}"
        for method, rate in LEARNING_RATES.items()
    )
    lines = [
        f"# Default vs reference pipeline, accuracy over seeds (issue 11) — {now:%Y-%m-%d}",
        "",
        f"- date: {now:%Y-%m-%d %H:%M} UTC"
        + (f"; this invocation {elapsed:.0f} s" if elapsed else ""),
        f"- machine: {describe_machine()}",
        "- command: `PEFTBENCH_DATA_DIR=../shared/data .venv/bin/python "
        "benchmarks/pipeline_equivalence.py --seeds SEEDS [--methods METHODS] [--ablate "
        "KEY=VALUE]` (two seeds at a time, one thread per run); this file: "
        f"`{shown_command()}`",
        *(
            f"- runs of {arm}: "
            + "; ".join(
                f"{method} seeds {','.join(map(str, seeds_of(runs, method)))}"
                for method in LEARNING_RATES
                if seeds_of(runs, method)
            )
            for arm, runs in arms.items()
        ),
        f"- workload: `{CONFIG}` with {' '.join(WORKLOAD)}, max length 256, batch 16; "
        f"learning rates {learning_rates}; default pipeline precision {', '.join(precision)}",
        "- test: paired by seed; equivalence declared only if the 95% t interval of the mean "
        f"difference lies inside +-{MARGIN_PP:.1f} pp (stricter than TOST at 5%, which uses the "
        "90% interval; its p is given too)",
        *(f"- note: {note}" for note in notes),
        "",
    ]
    for method in LEARNING_RATES:
        lines += [f"## {method}", ""]
        lines += comparison(method, arms, "default", "reference", verdict=True)
        for ablation in ablations:
            if seeds_of(arms[ablation], method):
                lines += comparison(method, arms, ablation, "reference", verdict=True)
                lines += comparison(method, arms, ablation, "default", verdict=False)
                for fewer in one_switch_less(ablation, ablations):
                    lines += comparison(method, arms, ablation, fewer, verdict=False)
    out = RESULTS / f"pipeline-equivalence-cpu-{now:%Y-%m-%d}.md"
    out.write_text("\n".join(lines), encoding="utf-8")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="0,1,2,3,4,5", help="comma-separated seeds")
    parser.add_argument("--parallel", type=int, default=2, help="seeds trained at once")
    parser.add_argument("--analyse-only", action="store_true", help="only write the result")
    parser.add_argument(
        "--note", action="append", default=[], help="a line for the result (e.g. what else ran)"
    )
    parser.add_argument(
        "--ablate",
        metavar="KEY=VALUE",
        action="append",
        help="train only the default pipeline with this switch changed (a third arm), e.g. "
        "training.precision=fp32; repeated: one arm with all of them changed",
    )
    parser.add_argument(
        "--methods", default=",".join(LEARNING_RATES), help="comma-separated: full, lora"
    )
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    methods = args.methods.split(",")
    if unknown := set(methods) - set(LEARNING_RATES):
        parser.error(f"unknown method(s) {sorted(unknown)}; choose from {list(LEARNING_RATES)}")
    for switch in args.ablate or []:
        if "=" not in switch or "+" in switch:
            parser.error(f"--ablate {switch}: give KEY=VALUE, e.g. training.precision=fp32")
    arms = [ablation_arm(sorted(args.ablate))] if args.ablate else list(PIPELINES)
    started, code = datetime.now(UTC), 0
    for arm in [*PIPELINES, *ablation_arms()]:  # committed runs the runner does not have yet
        restore_runs(KEPT / arm, OUTPUT / arm)
    if args.ablate and not args.analyse_only and (mismatch := precision_mismatch(args.ablate)):
        parser.error(mismatch)  # before any run, after the committed default runs are back
    if not args.analyse_only:
        for start in range(0, len(seeds), args.parallel):
            code = max(code, run_seeds(arms, methods, seeds[start : start + args.parallel]))
            keep_runs(arms)
    elapsed = None if args.analyse_only else (datetime.now(UTC) - started).total_seconds()
    print(f"wrote {write_result(seeds, elapsed, args.note)}")
    return code


if __name__ == "__main__":
    sys.exit(main())
