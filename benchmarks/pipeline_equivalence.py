"""Is the fast default pipeline as accurate as the study's? (issue 11, part 2)

Full fine-tuning and LoRA on MiniLM, IMDb 2,000 train / 1,000 test reviews, max length 256,
2 epochs, the learning rates of configs/imdb-minilm-cpu.yaml, six seeds, each run once with the
default pipeline and once with `training.pipeline: reference` (padded to max length, fp32, no
length grouping, the model's attention dropout). Same seed = same subsets, same head
initialisation and same epoch orders for both pipelines, so the runs pair by seed.

    PEFTBENCH_DATA_DIR=../shared/data .venv/bin/python benchmarks/pipeline_equivalence.py
    ... pipeline_equivalence.py --analyse-only     # only rewrite the result file

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
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from run_copies import copy_runs, restore_runs
from scipy import stats as scipy_stats

from peftbench import stats
from peftbench.measure import describe_machine
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
METHODS = 'methods={"full": {"learning_rate": 5.0e-5}, "lora": {"learning_rate": 2.0e-3}}'
PIPELINES = ("default", "reference")
MARGIN_PP = 1.0  # equivalence margin of the issue


def run_seeds(seeds: list[int]) -> int:
    """Both pipelines for these seeds, the seeds' runs in parallel (one thread each)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    env.setdefault("PEFTBENCH_DATA_DIR", str(ROOT.parent / "shared" / "data"))
    code = 0
    for pipeline in PIPELINES:
        command = [
            *(sys.executable, "-m", "peftbench.cli", "run", CONFIG, METHODS, *WORKLOAD),
            f"training.pipeline={pipeline}",
            f"output_dir={OUTPUT / pipeline}",
            *("--seeds", ",".join(map(str, seeds)), "--parallel", str(len(seeds))),
        ]
        code = max(code, subprocess.call(command, env=env, cwd=ROOT))
    return code


def keep_runs() -> None:
    """Copy the successful runs' records and predictions, machine paths removed, to KEPT."""
    for pipeline in PIPELINES:
        copy_runs(OUTPUT / pipeline, KEPT / pipeline, only_successful=True)


def load(pipeline: str) -> dict[tuple[str, int], dict]:
    """(method, seed) -> accuracy, train time, labels and predictions of successful runs."""
    directory = OUTPUT / pipeline
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


def tost_p(differences: np.ndarray, margin: float) -> float:
    """Two one-sided t tests of H0: |mean difference| >= margin; equivalence when p < alpha."""
    n = differences.size
    mean, se = differences.mean(), differences.std(ddof=1) / np.sqrt(n)
    p_low = scipy_stats.t.sf((mean + margin) / se, n - 1)  # H0: mean <= -margin
    p_high = scipy_stats.t.cdf((mean - margin) / se, n - 1)  # H0: mean >= +margin
    return float(max(p_low, p_high))


def method_section(method: str, default: dict, reference: dict) -> list[str]:
    seeds = sorted(s for m, s in default if m == method and (m, s) in reference)
    lines = [
        f"## {method}",
        "",
        "| seed | default (%) | reference (%) | difference (pp) | McNemar p | train s default"
        " / reference |",
        "| ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for seed in seeds:
        d, r = default[(method, seed)], reference[(method, seed)]
        p = stats.mcnemar_exact(r["labels"], r["predictions"], d["predictions"]).p_value
        lines.append(
            f"| {seed} | {d['accuracy']:.1f} | {r['accuracy']:.1f} | "
            f"{d['accuracy'] - r['accuracy']:+.1f} | {p:.3f} | "
            f"{d['train_s']:.0f} / {r['train_s']:.0f} |"
        )
    if len(seeds) < 2:
        return [*lines, "", f"{len(seeds)} complete pair(s): too few for an interval.", ""]
    diffs = np.array(
        [default[(method, s)]["accuracy"] - reference[(method, s)]["accuracy"] for s in seeds]
    )
    interval = stats.seed_interval(diffs.tolist())
    p_tost = tost_p(diffs, MARGIN_PP)
    spread = {
        name: np.std([runs[(method, s)]["accuracy"] for s in seeds], ddof=1)
        for name, runs in (("default", default), ("reference", reference))
    }
    equivalent = -MARGIN_PP < interval.low and interval.high < MARGIN_PP
    speed = sum(reference[(method, s)]["train_s"] for s in seeds) / sum(
        default[(method, s)]["train_s"] for s in seeds
    )
    verdict = "equivalent" if equivalent else "NOT shown equivalent"
    return [
        *lines,
        "",
        f"- mean paired difference (default - reference) over {len(seeds)} seeds: "
        f"{interval.estimate:+.2f} pp, 95% t interval [{interval.low:+.2f}, {interval.high:+.2f}]"
        f" pp; TOST against +-{MARGIN_PP:.1f} pp: p = {p_tost:.3f}",
        f"- verdict (95% interval inside +-{MARGIN_PP:.1f} pp): **{verdict}**",
        f"- seed-to-seed spread (SD of accuracy): default {spread['default']:.2f} pp, "
        f"reference {spread['reference']:.2f} pp",
        f"- training time, reference / default, same runs: {speed:.2f}x",
        "",
    ]


def write_result(seeds: list[int], elapsed: float | None, notes: list[str]) -> Path:
    default, reference = load("default"), load("reference")
    now = datetime.now(UTC)
    precision = {r["precision"] for r in default.values()} or {"?"}
    lines = [
        f"# Default vs reference pipeline, accuracy over seeds (issue 11) — {now:%Y-%m-%d}",
        "",
        f"- date: {now:%Y-%m-%d %H:%M} UTC"
        + (f"; this invocation {elapsed:.0f} s" if elapsed else ""),
        f"- machine: {describe_machine()}",
        "- command: `PEFTBENCH_DATA_DIR=../shared/data .venv/bin/python "
        f"benchmarks/pipeline_equivalence.py --seeds {','.join(map(str, seeds))}` (two seeds "
        "at a time, one thread per run)",
        f"- workload: `{CONFIG}` with {' '.join(WORKLOAD)}, max length 256, batch 16; "
        f"learning rates full 5e-5, LoRA 2e-3; default pipeline precision {', '.join(precision)}",
        "- test: paired by seed; equivalence declared only if the 95% t interval of the mean "
        f"difference lies inside +-{MARGIN_PP:.1f} pp (stricter than TOST at 5%, which uses the "
        "90% interval; its p is given too)",
        *(f"- note: {note}" for note in notes),
        "",
    ]
    for method in ("full", "lora"):
        lines += method_section(method, default, reference)
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
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    started, code = datetime.now(UTC), 0
    for pipeline in PIPELINES:  # committed runs the runner does not have yet
        restore_runs(KEPT / pipeline, OUTPUT / pipeline)
    if not args.analyse_only:
        for start in range(0, len(seeds), args.parallel):
            code = max(code, run_seeds(seeds[start : start + args.parallel]))
            keep_runs()
    elapsed = None if args.analyse_only else (datetime.now(UTC) - started).total_seconds()
    print(f"wrote {write_result(seeds, elapsed, args.note)}")
    return code


if __name__ == "__main__":
    sys.exit(main())
