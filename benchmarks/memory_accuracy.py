"""Benchmark (issue 14): predicted vs measured tensor memory on MiniLM + real IMDb, per component.

    PEFTBENCH_DATA_DIR=../shared/data .venv/bin/python benchmarks/memory_accuracy.py \\
        [--train-size 48] [--test-size 64]

Runs the study's four methods (configs/imdb-minilm-cpu.yaml: batch 16, eval 64, 256 tokens) for
one short epoch through `peftbench run` (each run in its own process, so process RSS is each
method's own; each run then measures its serving cost, merged and unmerged), then predicts each
run's peaks on fake tensors (peftbench.memory_plan) at the run's shape and precision, and writes
benchmarks/results/memory-accuracy-<date>.md: predicted vs measured MiB per component, the error
in %, process RSS beside them, the serving latency, throughput and memory (merged and unmerged),
and QLoRA's frozen weights as a fraction of LoRA's. Tensor memory does not depend on the
machine's load; times do.
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime
from pathlib import Path

from peftbench_process import peftbench_run
from provenance import shown_command

from peftbench.config import load_config
from peftbench.measure import describe_machine
from peftbench.memory import COMPONENTS
from peftbench.memory_plan import StepShape, simulate_peaks
from peftbench.methods import get_method
from peftbench.models import architecture_for_planning
from peftbench.results import load_records

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
CONFIG = ROOT / "configs" / "imdb-minilm-cpu.yaml"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train-size", type=int, default=48)
    parser.add_argument("--test-size", type=int, default=64)
    args = parser.parse_args()
    output_dir = ROOT / "results" / "benchmark-memory-accuracy"
    overrides = [
        f"data.train_size={args.train_size}",
        f"data.test_size={args.test_size}",
        "training.epochs=1",
        f"output_dir={output_dir}",
    ]
    start = time.perf_counter()
    if code := peftbench_run(CONFIG, overrides):
        return code
    config = load_config(CONFIG, overrides)
    records = {r["run_info"]["label"]: r for r in load_records(output_dir)[0]}
    architecture, _ = architecture_for_planning(config.model, 2)
    training = config.training
    shape = StepShape(training.train_batch_size, training.eval_batch_size, training.max_length)
    lines, frozen, serving = [], {}, []
    for entry in config.methods:
        record = records[entry.label]
        serving.append(serving_line(entry.label, record["measurements"]["serving"]))
        measured = record["measurements"]["memory"]["tensor_mib"]
        precision = record["train_info"]["precision"]
        predicted = simulate_peaks(
            architecture, get_method(entry.method), entry.params, training, shape, precision
        )
        frozen[entry.label] = measured["train"]["frozen_weights"]
        rss = record["measurements"]["memory"]["peak_rss_mb"]
        for phase in ("train", "eval"):
            real, guess = measured[phase], predicted[phase]
            cells = [f"{guess[c]:,.1f} / {real[c]:,.1f}" for c in COMPONENTS]
            error = 100 * (guess["total_mib"] - real["total_mib"]) / real["total_mib"]
            lines.append(
                f"| {entry.label} | {phase} | {' | '.join(cells)} | "
                f"{guess['total_mib']:,.1f} / {real['total_mib']:,.1f} | {error:+.1f} | "
                f"{rss:,.0f} |"
            )
    wall = time.perf_counter() - start
    examples = records[config.methods[0].label]["measurements"]["serving"]["examples"]
    write_result(args, lines, (serving, examples), frozen, wall, precision)
    return 0


def serving_line(label: str, serving: dict) -> str:
    """One run's serving row: unmerged and merged latency, throughput, memory; merge check."""
    cells = []
    for variant in ("unmerged", "merged"):
        cost = serving.get(variant)
        if cost is None:
            cells += ["—"] * 3
            continue
        cells += [
            f"{1000 * cost['latency_s_per_example_batch1']:,.1f}",
            f"{cost['throughput_examples_per_s']:,.1f}",
            f"{cost['tensor_peak_mib']:,.1f}",
        ]
    if serving.get("merged") is None:
        check = f"not merged: {serving.get('not_merged_because')}"
    else:
        same = "same predictions" if serving["merged_predictions_agree"] else "predictions differ"
        check = f"{same}; logits differ by at most {serving['merged_max_logit_difference']:.2g}"
    return f"| {label} | {' | '.join(cells)} | {check} |"


def write_result(args, lines, serving_rows, frozen, wall, precision) -> None:
    serving, examples = serving_rows
    date = datetime.now(UTC).strftime("%Y-%m-%d")
    header = " | ".join(c.replace("_", " ") for c in COMPONENTS)
    ratio = frozen["qlora"] / frozen["lora"] if frozen.get("lora") else float("nan")
    text = [
        f"# Predicted vs measured tensor memory, MiniLM on IMDb ({date})",
        "",
        f"- machine: {describe_machine()} (shared with other jobs: tensor memory does not "
        "depend on load; wall time does)",
        f"- command: `{shown_command()}`",
        f"- workload: configs/imdb-minilm-cpu.yaml, {args.train_size} train / {args.test_size} "
        f"test reviews, 1 epoch, batch 16 (eval 64), 256 tokens, precision {precision}; "
        f"wall time {wall / 60:.1f} min",
        "",
        "Each cell is predicted / measured MiB (2**20 bytes) at the phase's peak; error is the "
        "predicted total's error in %. Process RSS (peak resident memory of the whole run's "
        "process: Python, libraries, allocator caches, tokenised data) is a different, larger "
        "figure, shown beside them.",
        "",
        f"| run | phase | {header} | total | error (%) | process RSS (MiB) |",
        "| --- | --- |" + " --- |" * (len(COMPONENTS) + 3),
        *lines,
        "",
        "Serving (peftbench.serving, on the first "
        f"{examples} test reviews, after training): latency per example at batch "
        "1 (median), throughput at the eval batch size, and the tensor memory to serve "
        "(weights + the peak of a batch), for the adapter as trained (unmerged) and merged "
        "into its base. Times are wall-clock on a machine shared with other jobs: not quiet, "
        "compare them only roughly; memory does not depend on load.",
        "",
        "| run | unmerged latency (ms/example) | unmerged throughput (examples/s) | unmerged "
        "memory (MiB) | merged latency (ms/example) | merged throughput (examples/s) | merged "
        "memory (MiB) | merge check |",
        "| --- |" + " --- |" * 7,
        *serving,
        "",
        f"QLoRA's frozen weights are {ratio:.3f} of LoRA's ({frozen.get('qlora', 0):,.1f} vs "
        f"{frozen.get('lora', 0):,.1f} MiB), not 1/8: only the encoder's linear layers are "
        "stored in 4 bits (plus a byte of scale per 64 values); the word, position and token-type "
        "embeddings, the LayerNorms, biases, pooler and classification head stay in fp32.",
    ]
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"memory-accuracy-{date}.md"
    path.write_text("\n".join(text) + "\n", encoding="utf-8")
    print(path.read_text())


if __name__ == "__main__":
    raise SystemExit(main())
