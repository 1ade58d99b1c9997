"""GPU check (issue 14): do the CUDA paths work, and how close is the memory prediction on a GPU?

    python benchmarks/gpu_check.py --out DIR            # on a GPU machine, ~5 min on one H200
    python benchmarks/gpu_check.py --out DIR --dry-run  # tiny sizes on CPU: checks the script

For the study config (configs/imdb-roberta-base.yaml) with random weights (no download) and
synthetic token sequences drawn from IMDb's length distribution
(benchmarks/data/imdb-token-lengths.json; the data itself does not travel), it trains full,
LoRA, QLoRA and IA3 for a fixed number of steps and writes DIR/gpu-check.json and
DIR/gpu-check.md: predicted vs measured tensor peak by component, the CUDA allocator's peak
allocated and reserved, NVML's device peak, time per step, tokens/s and MFU, and whether bf16
autocast, fused AdamW, bitsandbytes 4-bit, NVML and SDPA attention worked.

A GPU machine without a package registry needs these wheels (the versions this was written
against; install torch first, pinned, so that nothing pulls another build):
    torch==2.13.0 (CUDA build)  transformers==5.24.0  peft==0.21.2  accelerate==1.15.0
    bitsandbytes==0.50.2  safetensors==0.8.0  tokenizers==0.23.3  nvidia-ml-py  numpy  pyyaml
    and peftbench itself (pip install --no-deps -e .)
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from peftbench.config import ModelConfig, TrainingConfig, load_config
from peftbench.flops import flops_summary, model_shape, peak_flops
from peftbench.measure import NvmlPeak, describe_machine
from peftbench.memory import COMPONENTS, TensorMemoryTracker
from peftbench.memory_plan import StepShape, simulate_peaks
from peftbench.methods import MethodContext, get_method
from peftbench.models import architecture_for_planning, build_random_model, load_model

ROOT = Path(__file__).resolve().parent.parent
LENGTHS = ROOT / "benchmarks" / "data" / "imdb-token-lengths.json"
STUDY = ROOT / "configs" / "imdb-roberta-base.yaml"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="directory for the results")
    parser.add_argument("--steps", type=int, default=30, help="training steps per method")
    parser.add_argument("--dry-run", action="store_true", help="tiny sizes on CPU")
    return parser.parse_args()


def sample_lengths(count: int, max_length: int, rng: np.random.Generator) -> list[int]:
    """Review lengths drawn from IMDb's histogram (uniform within a bin), capped at max_length."""
    histogram = json.loads(LENGTHS.read_text(encoding="utf-8"))
    edges, counts = histogram["bin_edges"], np.array(histogram["counts"], dtype=float)
    bins = rng.choice(len(counts), size=count, p=counts / counts.sum())
    lengths = []
    for b in bins:
        low = edges[b]
        high = edges[b + 1] if edges[b + 1] is not None else max_length + 1
        lengths.append(min(max_length, int(rng.integers(max(low, 8), max(high, low + 9)))))
    return lengths


def batches(steps: int, size: int, max_length: int, vocab: int, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    result = []
    for _ in range(steps):
        lengths = sample_lengths(size, max_length, rng)
        longest = max(lengths)
        ids = rng.integers(3, vocab, size=(size, longest))
        mask = np.zeros((size, longest), dtype=np.int64)
        for row, length in enumerate(lengths):
            mask[row, :length] = 1
        result.append(
            {
                "input_ids": torch.from_numpy(ids * mask + (1 - mask)),  # pad id 1 (RoBERTa)
                "attention_mask": torch.from_numpy(mask),
                "labels": torch.from_numpy(rng.integers(0, 2, size=size)),
            }
        )
    return result


def setup(dry_run: bool) -> tuple[Any, TrainingConfig, torch.device, str, Any]:
    config = load_config(STUDY)
    architecture, _ = architecture_for_planning(config.model, 2)
    training = config.training
    if dry_run:
        architecture.update(
            {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4},
        )
        architecture.intermediate_size = 128
        training = TrainingConfig(train_batch_size=4, eval_batch_size=8, max_length=64)
        return config, training, torch.device("cpu"), "fp32", architecture
    return config, training, torch.device("cuda"), "bf16", architecture


def check_method(entry: Any, base_dir: Path, args: argparse.Namespace, ctx: dict) -> dict:
    device, precision, training = ctx["device"], ctx["precision"], ctx["training"]
    method = get_method(entry.method)
    params = entry.params
    torch.manual_seed(0)
    model = load_model(
        ModelConfig(name=str(base_dir)), 2, device, method.quantization(params), "sdpa", "auto"
    )
    model = method.apply(model, params, MethodContext(total_steps=args.steps))
    optimizer = torch.optim.AdamW(
        method.optimizer_groups(model, params), lr=params.learning_rate, fused=device.type == "cuda"
    )
    nvml = NvmlPeak(0) if device.type == "cuda" else None
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    tracker = TensorMemoryTracker(model, optimizer)
    data = batches(args.steps, training.train_batch_size, training.max_length, ctx["vocab"], 0)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
    times, lengths, loss_dtype = [], [], None
    model.train()
    with tracker.measure("train"):
        for batch in data:
            start = time.perf_counter()
            with autocast:
                output = model(**{k: v.to(device) for k, v in batch.items()})
            loss_dtype = str(output.logits.dtype)
            output.loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
            lengths += batch["attention_mask"].sum(1).tolist()
    eval_batch = batches(1, training.eval_batch_size, training.max_length, ctx["vocab"], 1)[0]
    model.eval()
    with tracker.measure("eval"), torch.no_grad(), autocast:
        model(**{k: v.to(device) for k, v in eval_batch.items()})
    measured = tracker.peaks()
    predicted = simulate_peaks(
        ctx["architecture"],
        method,
        params,
        training,
        StepShape(training.train_batch_size, training.eval_batch_size, training.max_length),
        precision,
        device.type,
    )
    step_s = statistics.median(times[1:] or times)
    flops = flops_summary(model_shape(model), lengths, 1, None, sum(times[1:]) or sum(times))
    peak = ctx["peak"]
    result = {
        "label": entry.label,
        "predicted_mib": predicted,
        "measured_mib": measured,
        "error_percent": {
            phase: 100
            * (predicted[phase]["total_mib"] - measured[phase]["total_mib"])
            / measured[phase]["total_mib"]
            for phase in ("train", "eval")
        },
        "step_s": step_s,
        "tokens_per_s": sum(lengths) / sum(times),
        "mfu": flops["train_flops"] / sum(times) / peak.flops if peak else None,
        "logits_dtype": loss_dtype,
        "fused_adamw": bool(optimizer.defaults.get("fused")),
        "linear4bit_layers": _count_4bit(model),
        "attention": getattr(model.config, "_attn_implementation", None),
    }
    if device.type == "cuda":
        result["cuda_peak_allocated_mib"] = torch.cuda.max_memory_allocated() / 2**20
        result["cuda_peak_reserved_mib"] = torch.cuda.max_memory_reserved() / 2**20
        result["nvml_peak_used_mib"] = nvml.stop() if nvml else None
    del model, optimizer, tracker
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return result


def _count_4bit(model: torch.nn.Module) -> int:
    try:
        import bitsandbytes as bnb
    except ImportError:
        return 0
    return sum(isinstance(m, bnb.nn.Linear4bit) for m in model.modules())


def checks(results: list[dict], device: torch.device) -> dict[str, str]:
    """Which CUDA paths worked (on CPU, the dry run says which it could not check)."""
    by = {r["label"]: r for r in results}
    if device.type != "cuda":
        return {"cuda": "not checked: dry run on CPU"}
    return {
        "bf16_autocast": "ok" if by["full"]["logits_dtype"] == "torch.bfloat16" else "FAILED",
        "fused_adamw": "ok" if all(r["fused_adamw"] for r in results) else "FAILED",
        "bitsandbytes_4bit": "ok" if by["qlora"]["linear4bit_layers"] > 0 else "FAILED",
        "nvml": "ok" if by["full"].get("nvml_peak_used_mib") else "FAILED",
        "sdpa": "ok" if all(r["attention"] == "sdpa" for r in results) else "FAILED",
    }


def main() -> int:
    args = parse_args()
    config, training, device, precision, architecture = setup(args.dry_run)
    if args.dry_run:
        args.steps = min(args.steps, 2)
    peak = None if args.dry_run else peak_flops(device, torch.bfloat16)
    ctx = {
        "device": device,
        "precision": precision,
        "training": training,
        "architecture": architecture,
        "vocab": architecture.vocab_size,
        "peak": peak,
    }
    results = []
    with tempfile.TemporaryDirectory(prefix="peftbench-gpu-check-") as scratch:
        torch.manual_seed(0)
        build_random_model(architecture).save_pretrained(scratch)
        for entry in config.methods:
            print(f"{entry.label}: {args.steps} steps ...", flush=True)
            results.append(check_method(entry, Path(scratch), args, ctx))
    write(args, results, checks(results, device), training, precision)
    return 0


def write(args, results, checks_done, training, precision) -> None:
    args.out.mkdir(parents=True, exist_ok=True)
    summary = {
        "machine": describe_machine(),
        "command": "python benchmarks/gpu_check.py --out DIR"
        + (" --dry-run" if args.dry_run else "")
        + f" --steps {args.steps}",
        "workload": f"study config, random weights, synthetic IMDb-length batches of "
        f"{training.train_batch_size} (eval {training.eval_batch_size}), max {training.max_length} "
        f"tokens, {precision}",
        "checks": checks_done,
        "methods": results,
    }
    (args.out / "gpu-check.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
    lines = [
        "# GPU check",
        "",
        f"- machine: {summary['machine']}",
        f"- command: `{summary['command']}`",
        f"- workload: {summary['workload']}",
        f"- checks: {checks_done}",
        "",
        "| run | phase | predicted / measured MiB: "
        + ", ".join(COMPONENTS)
        + " | total | error (%) | step (s) | tokens/s | MFU |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        for phase in ("train", "eval"):
            p, m = r["predicted_mib"][phase], r["measured_mib"][phase]
            parts = ", ".join(f"{p[c]:,.0f}/{m[c]:,.0f}" for c in COMPONENTS)
            mfu = f"{100 * r['mfu']:.1f}%" if r["mfu"] else "n/a"
            lines.append(
                f"| {r['label']} | {phase} | {parts} | {p['total_mib']:,.1f}/{m['total_mib']:,.1f}"
                f" | {r['error_percent'][phase]:+.1f} | {r['step_s']:.3f} | "
                f"{r['tokens_per_s']:,.0f} | {mfu} |"
            )
    (args.out / "gpu-check.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    raise SystemExit(main())
