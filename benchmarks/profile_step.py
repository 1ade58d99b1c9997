"""Where a training step's time goes (issue 5): profile default-pipeline steps on real IMDb.

    PEFTBENCH_DATA_DIR=../shared/data .venv/bin/python benchmarks/profile_step.py \\
        [--method lora] [--steps 4] [--max-length 512] [--threads N]

MiniLM (configs/imdb-minilm-cpu.yaml, its learning rates), batches of 16 reviews grouped by
length as in a real run. One step warms up; the next --steps run under torch.profiler. Prints
and writes benchmarks/results/profile-<device>-<date>-<method>-len<max length>.md: time per step,
real tokens/s, MFU against the measured matmul peak, time per kind of operator (self time, so
nothing is counted twice) and the top operators.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

import torch
from provenance import shown_command
from torch.profiler import ProfilerActivity, profile

from peftbench.config import load_config
from peftbench.data import PreparedData, batch_order, prepare_data
from peftbench.flops import flops_summary, model_shape, peak_flops
from peftbench.loop import RunState, train_epoch
from peftbench.measure import describe_machine
from peftbench.methods import MethodContext, get_method
from peftbench.models import load_model, load_tokenizer
from peftbench.run_spec import RunSpec
from peftbench.train import pick_device, pick_precision, set_seed

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "configs" / "imdb-minilm-cpu.yaml"
BATCH = 16

# Operator name fragments -> the kind of work; the first match wins, the rest is "other".
KINDS = [
    ("matrix multiply", ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm")),
    ("attention (SDPA, softmax)", ("scaled_dot_product", "softmax")),
    ("dropout (random masks)", ("dropout", "bernoulli")),
    ("layer norm", ("layer_norm",)),
    ("GELU", ("gelu",)),
    ("embedding", ("embedding",)),
    ("optimizer (AdamW)", ("adam",)),
    ("copies and layout", ("aten::copy_", "aten::clone", "aten::contiguous", "aten::cat")),
]


def kind_of(name: str) -> str:
    for kind, fragments in KINDS:
        if any(fragment in name for fragment in fragments):
            return kind
    return "other (elementwise, reductions, autograd glue)"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--method", default="lora", help="a method of configs/imdb-minilm-cpu.yaml")
    parser.add_argument("--steps", type=int, default=4, help="profiled steps after one warm-up")
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    torch.set_num_threads(args.threads)
    os.environ.setdefault("PEFTBENCH_DATA_DIR", str(ROOT.parent / "shared" / "data"))
    steps = args.steps + 1
    config = load_config(
        CONFIG,
        [
            f"data.train_size={steps * BATCH}",
            "data.test_size=2",
            f"training.max_length={args.max_length}",
            "training.epochs=1",
        ],
    )
    entry = next((m for m in config.methods if m.label == args.method), None)
    if entry is None:
        sys.exit(f"--method {args.method}: not in {CONFIG.name}")
    training = config.training
    device = pick_device(training.device)
    precision = pick_precision(training.precision, device)
    with tempfile.TemporaryDirectory() as cache:
        data, _ = prepare_data(
            config.data,
            load_tokenizer(config.model),
            config.model.name,
            args.max_length,
            Path(cache),
        )
    set_seed(0)
    method = get_method(entry.method)
    model = load_model(config.model, data.num_labels, device, None, training.attention)
    model = method.apply(model, entry.params, MethodContext(total_steps=steps))
    optimizer = torch.optim.AdamW(
        method.optimizer_groups(model, entry.params), lr=entry.params.learning_rate
    )
    scheduler = torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0)
    scaler = torch.amp.GradScaler(device.type, enabled=False)
    spec = RunSpec(
        run_id=f"{entry.label}-profile",
        label=entry.label,
        method=entry.method,
        params=entry.params,
        seed=0,
        experiment=config.name,
        config_hash="",
        model=config.model,
        training=training,
        data_cache="",
        run_dir="",
    )
    state = RunState(spec, device, precision, data, method, model, optimizer, scheduler, scaler)
    # Batches in the run's own order: grouped by length, so a step is a realistic one.
    lengths = [len(ids) for ids in data.train.input_ids]
    order = [i for batch in batch_order(lengths, BATCH, 1000, True) for i in batch]

    def subset(indices: list[int]) -> PreparedData:
        return dataclasses.replace(data, train=data.train.select(indices))

    def run(part: PreparedData) -> tuple[float, int]:
        state.data = part
        tokens_before = state.progress.totals["train_tokens"]
        start = time.perf_counter()
        train_epoch(state, 1)
        return time.perf_counter() - start, state.progress.totals["train_tokens"] - tokens_before

    run(subset(order[:BATCH]))  # warm-up
    profiled = subset(order[BATCH:])
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        seconds, tokens = run(profiled)
    lengths_done = [len(ids) for ids in profiled.train.input_ids]
    flops = flops_summary(model_shape(model), lengths_done, 1)["train_flops"]
    peak = peak_flops(device, torch.float32)
    events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
    total_us = sum(e.self_cpu_time_total for e in events)
    by_kind: dict[str, float] = defaultdict(float)
    for event in events:
        by_kind[kind_of(event.key)] += event.self_cpu_time_total
    started = datetime.now(UTC)
    lines = [
        f"# Profile of a training step: {args.method}, MiniLM, IMDb, max length "
        f"{args.max_length}, {device.type} — {started:%Y-%m-%d}",
        "",
        f"- date: {started:%Y-%m-%d %H:%M} UTC; machine: {describe_machine()}; "
        f"{torch.get_num_threads()} torch threads; precision {precision}",
        f"- command: `{shown_command()}`",
        f"- {args.steps} steps of {BATCH} reviews (grouped by length, as in a run), "
        f"{tokens:,} real tokens, {seconds:.1f} s under the profiler: "
        f"{seconds / args.steps:.2f} s/step, {tokens / seconds:.0f} tokens/s, "
        f"{flops / seconds / 1e9:.1f} GFLOP/s = {100 * flops / seconds / peak.flops:.1f}% MFU "
        f"of {peak.flops / 1e9:.0f} GFLOP/s ({peak.source})",
        "- the profiler adds some overhead of its own; shares below are of operator self time",
        "",
        "| kind of work | self time (s) | share |",
        "| --- | ---: | ---: |",
    ]
    for kind, us in sorted(by_kind.items(), key=lambda item: -item[1]):
        lines.append(f"| {kind} | {us / 1e6:.2f} | {100 * us / total_us:.1f}% |")
    lines += ["", "| operator | calls | self time (s) | share |", "| --- | ---: | ---: | ---: |"]
    for event in sorted(events, key=lambda e: -e.self_cpu_time_total)[:20]:
        lines.append(
            f"| `{event.key}` | {event.count} | {event.self_cpu_time_total / 1e6:.2f} | "
            f"{100 * event.self_cpu_time_total / total_us:.1f}% |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    out = (
        ROOT / "benchmarks" / "results" / f"profile-{device.type}-{started:%Y-%m-%d}-"
        f"{args.method}-len{args.max_length}.md"
    )
    out.write_text(text, encoding="utf-8")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
