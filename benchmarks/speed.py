"""Benchmark (issue 5): the default pipeline against the reference study's, on this CPU.

    PEFTBENCH_DATA_DIR=../shared/data .venv/bin/python benchmarks/speed.py [options] [overrides...]

MiniLM (configs/imdb-minilm-cpu.yaml, its learning rates) on real IMDb, 1,000 train / 1,000 test
reviews, max length 512, 1 epoch; LoRA and full fine-tuning, each with `training.pipeline=reference`
and `=default`, run one after another in the order lora-reference, lora-default, full-default,
full-reference (ABBA, so a drift in machine speed hits both pipelines alike). Each run is its own
`peftbench run` under results/benchmark-speed/<method>-<pipeline>/, which is wiped first. The
CPU's matmul peak (fp32 and bf16) is measured at the start into a fresh cache that the runs read
through PEFTBENCH_CACHE_DIR, so the records' MFU is against that peak.

Targets: the default pipeline >= 3x faster end to end (train + eval) than the reference for both
methods, its accuracy not worse beyond the noise (McNemar exact p >= 0.05, or not lower), and
LoRA in the default pipeline >= 50% MFU of the peak for the dtype it used. Writes
benchmarks/results/speed-cpu-<date>.md (-reduced-... for a smaller workload) and exits 0 only when
every target is met.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import torch
from peftbench_process import offline_env, peftbench_run
from provenance import shown_command

from peftbench import stats
from peftbench.config import load_raw
from peftbench.flops import peak_flops
from peftbench.measure import cpu_has_native_bf16, describe_machine
from peftbench.results import load_records, predictions_path

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "configs" / "imdb-minilm-cpu.yaml"
RUNS = [("lora", "reference"), ("lora", "default"), ("full", "default"), ("full", "reference")]
FULL_SIZE = {"train_size": 1000, "test_size": 1000, "max_length": 512, "epochs": 1}
TARGET_SPEEDUP, TARGET_LORA_MFU, ALPHA = 3.0, 0.50, 0.05


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train-size", type=int, default=FULL_SIZE["train_size"])
    parser.add_argument("--test-size", type=int, default=FULL_SIZE["test_size"])
    parser.add_argument("--max-length", type=int, default=FULL_SIZE["max_length"])
    parser.add_argument("--epochs", type=int, default=FULL_SIZE["epochs"])
    parser.add_argument("--output-dir", type=Path, default=ROOT / "results" / "benchmark-speed")
    parser.add_argument("overrides", nargs="*", help="passed to every run, e.g. training.x=y")
    return parser.parse_args()


def run_one(method: str, pipeline: str, args: argparse.Namespace, env: dict) -> dict:
    """One `peftbench run` in a fresh directory; its record, predictions and process wall time."""
    out = args.output_dir / f"{method}-{pipeline}"
    shutil.rmtree(out, ignore_errors=True)
    rate = load_raw(CONFIG)["methods"][method]["learning_rate"]
    overrides = [
        f"output_dir={out}",
        f"methods={json.dumps({method: {'learning_rate': rate}})}",
        f"training.pipeline={pipeline}",
        f"training.epochs={args.epochs}",
        f"training.max_length={args.max_length}",
        f"data.train_size={args.train_size}",
        f"data.test_size={args.test_size}",
        *args.overrides,
    ]
    print(
        f"\n=== {method}-{pipeline}: peftbench run {CONFIG.name} {' '.join(overrides)}", flush=True
    )
    started = time.perf_counter()
    code = peftbench_run(CONFIG, overrides, env)
    row = {"method": method, "pipeline": pipeline, "code": code}
    row["wall_s"] = time.perf_counter() - started
    records, _ = load_records(out)
    if records:
        row["record"] = records[0]
        predictions = predictions_path(out, records[0]["run_id"])
        if predictions.exists():
            row["predictions"] = json.loads(predictions.read_text())
    return row


def measures(row: dict, peaks: dict) -> dict:
    """The numbers of one run; empty when it left no successful record."""
    record = row.get("record")
    if not record or record["status"] != "success" or "predictions" not in row:
        return {}
    info, flops = record["train_info"], record["train_info"]["flops"]
    labels, predicted = row["predictions"]["labels"], row["predictions"]["predictions"]
    return {
        "precision": info["precision"],
        "attention_dropout": info.get("attention_dropout"),
        "train_s": info["train_time_s"],
        "e2e_s": info["train_time_s"] + info["eval_time_s"],
        "tokens_per_s": info["train_tokens_per_s"],
        "mfu": flops.get("mfu"),
        "peak_matches": flops.get("peak_flops") == peaks.get(info["precision"]),
        "rss_mb": record["measurements"]["memory"]["peak_rss_mb"],
        "accuracy": stats.bootstrap_interval(labels, predicted),
        "labels": labels,
        "predictions": predicted,
    }


def run_table(rows: list[dict]) -> list[str]:
    lines = [
        "| run | dtype | attention dropout | process s | train s | train+eval s | tokens/s | MFU "
        "| peak RSS MB | accuracy [95% CI] |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        m, name = row["m"], f"{row['method']}-{row['pipeline']}"
        if not m:
            lines.append(f"| {name} | FAILED (exit {row['code']}) || {row['wall_s']:.1f} |||||||")
            continue
        acc = m["accuracy"]
        mfu = f"{100 * m['mfu']:.1f}%" if m["mfu"] is not None else "?"
        lines.append(
            f"| {name} | {m['precision']} | {m['attention_dropout']} | {row['wall_s']:.1f} "
            f"| {m['train_s']:.1f} "
            f"| {m['e2e_s']:.1f} | {m['tokens_per_s']:.0f} | {mfu}"
            f"{'' if m['peak_matches'] else ' (other peak!)'} | {m['rss_mb']:.0f} "
            f"| {100 * acc.estimate:.1f} [{100 * acc.low:.1f}, {100 * acc.high:.1f}] |"
        )
    return lines


def compare(method: str, ref: dict, new: dict) -> tuple[list[str], list[bool]]:
    """The reference/default ratios and accuracy check of one method, and the verdicts."""
    r, d = ref["m"], new["m"]
    if not r or not d:
        return [f"- {method}: a run failed, no comparison — target NOT met"], [False]
    e2e = r["e2e_s"] / d["e2e_s"]
    test = stats.mcnemar_exact(r["labels"], r["predictions"], d["predictions"])
    ra, da = r["accuracy"], d["accuracy"]
    overlap = ra.low <= da.high and da.low <= ra.high
    accuracy_ok = da.estimate >= ra.estimate or test.p_value >= ALPHA
    lines = [
        f"- {method}: reference/default train time {r['train_s'] / d['train_s']:.2f}x, "
        f"end to end (train+eval) {e2e:.2f}x, process {ref['wall_s'] / new['wall_s']:.2f}x; "
        f"accuracy {100 * da.estimate:.1f}% default vs {100 * ra.estimate:.1f}% reference, "
        f"McNemar only-reference-right {test.b} / only-default-right {test.c}, "
        f"p = {test.p_value:.3f}, intervals {'overlap' if overlap else 'do NOT overlap'}",
        f"  - target default >= {TARGET_SPEEDUP:.0f}x faster end to end: "
        + ("met" if e2e >= TARGET_SPEEDUP else "NOT met"),
        "  - target accuracy not worse beyond the noise: " + ("met" if accuracy_ok else "NOT met"),
    ]
    return lines, [e2e >= TARGET_SPEEDUP, accuracy_ok]


def main() -> int:
    args = parse_args()
    started = datetime.now(UTC)
    args.output_dir = args.output_dir.resolve()
    cache_dir = args.output_dir / "peak-cache"
    shutil.rmtree(cache_dir, ignore_errors=True)
    env = offline_env(PEFTBENCH_CACHE_DIR=str(cache_dir))
    for override in args.overrides:  # the peak is cached per thread count: measure with the runs'
        if override.startswith("training.num_threads="):
            torch.set_num_threads(int(override.split("=", 1)[1]))
    threads = torch.get_num_threads()
    # bf16 only where the CPU runs it natively (or it is asked for): emulated, a 2048³ matmul
    # takes about a minute, and precision "auto" then trains in fp32 anyway.
    dtypes = {"fp32": torch.float32}
    if cpu_has_native_bf16() or "training.precision=bf16" in args.overrides:
        dtypes["bf16"] = torch.bfloat16
    peaks = {}
    for name, dtype in dtypes.items():
        peak = peak_flops(torch.device("cpu"), dtype, cache_file=cache_dir / "peak_flops.json")
        peaks[name] = peak.flops
        print(f"peak {name}: {peak.flops / 1e9:.1f} GFLOP/s ({peak.source})", flush=True)

    rows = [run_one(method, pipeline, args, env) for method, pipeline in RUNS]
    for row in rows:
        row["m"] = measures(row, peaks)
    by_name = {(row["method"], row["pipeline"]): row for row in rows}
    verdict_lines, verdicts = [], []
    for method in ("lora", "full"):
        lines, ok = compare(method, by_name[method, "reference"], by_name[method, "default"])
        verdict_lines += lines
        verdicts += ok
    lora = by_name["lora", "default"]["m"]
    mfu_ok = bool(lora) and (lora["mfu"] or 0.0) >= TARGET_LORA_MFU
    verdicts.append(mfu_ok)
    verdict_lines.append(
        f"- target LoRA (default pipeline) >= {100 * TARGET_LORA_MFU:.0f}% MFU of the measured "
        f"{lora.get('precision', '?')} peak: "
        + (f"{100 * lora['mfu']:.1f}%, " if lora and lora["mfu"] is not None else "")
        + ("met" if mfu_ok else "NOT met")
    )
    met = all(verdicts) and all(row["code"] == 0 for row in rows)
    verdict_lines.append(f"- **all targets {'met' if met else 'NOT met'}**")

    elapsed = (datetime.now(UTC) - started).total_seconds()
    workload = {k: getattr(args, k) for k in FULL_SIZE}
    lines = [
        f"# Speed: default vs reference pipeline, MiniLM on IMDb, CPU — {started:%Y-%m-%d}",
        "",
        f"- date: {started:%Y-%m-%d %H:%M} UTC; wall time of the whole benchmark {elapsed:.0f} s",
        f"- machine: {describe_machine()}; {threads} torch threads",
        f"- command: `{shown_command()}`",
        f"- workload: {workload['train_size']} train / {workload['test_size']} test, "
        f"max length {workload['max_length']}, {workload['epochs']} epoch(s); "
        f"config `configs/imdb-minilm-cpu.yaml`; runs in the order shown; "
        f"exit codes {[row['code'] for row in rows]}",
        "- matmul peak measured at the start (2048³, best of 5): "
        + ", ".join(f"{k} {v / 1e9:.1f} GFLOP/s" for k, v in peaks.items())
        + ("" if "bf16" in peaks else " (bf16 not measured: no native bf16 on this CPU)"),
        "- process s: the whole `peftbench run` (start-up, data preparation, model load, train, "
        "eval, save, report); train+eval s: from the record; tokens/s: real training tokens; "
        "accuracy interval: 1,000-resample bootstrap over test examples",
        "",
        *run_table(rows),
        "",
        *verdict_lines,
    ]
    text = "\n".join(lines) + "\n"
    print("\n" + text)
    suffix = (
        ""
        if workload == FULL_SIZE
        else "-reduced-"
        + "-".join(f"{key}{value}" for key, value in workload.items() if value != FULL_SIZE[key])
    )
    out = ROOT / "benchmarks" / "results" / f"speed-cpu-{started:%Y-%m-%d}{suffix}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(f"wrote {out}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
