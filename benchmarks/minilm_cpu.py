"""Benchmark: the four methods of the reference study on MiniLM, real IMDb, this machine's CPU.

    PEFTBENCH_DATA_DIR=../shared/data .venv/bin/python benchmarks/minilm_cpu.py [overrides...]

Runs configs/imdb-minilm-cpu.yaml offline and writes benchmarks/results/minilm-cpu-<date>.md
with the date, machine, command and the results table. Target (issue 2): every method above
75% test accuracy.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "configs" / "imdb-minilm-cpu.yaml"
TARGET_ACCURACY = 0.75


def machine() -> str:
    cpu = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    memory_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{cpu}, {os.cpu_count()} cores, {memory_gb:.0f} GiB, {platform.platform()}, no GPU"


def main() -> int:
    output_dir = ROOT / "results" / "benchmark-minilm-cpu"
    overrides = [f"output_dir={output_dir}", *sys.argv[1:]]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    env.setdefault("PEFTBENCH_DATA_DIR", str(ROOT.parent / "shared" / "data"))
    command = [sys.executable, "-m", "peftbench.cli", "run", str(CONFIG), *overrides]
    started = datetime.now(UTC)
    code = subprocess.call(command, env=env, cwd=ROOT)
    elapsed = (datetime.now(UTC) - started).total_seconds()

    records = [
        json.loads(p.read_text()) for p in sorted((output_dir / "runs").glob("*/record.json"))
    ]
    lines = [
        f"# MiniLM on IMDb, CPU — {started:%Y-%m-%d}",
        "",
        f"- date: {started:%Y-%m-%d %H:%M} UTC; wall time of the whole benchmark {elapsed:.0f} s",
        f"- machine: {machine()}",
        "- command: `PEFTBENCH_DATA_DIR=../shared/data .venv/bin/python benchmarks/minilm_cpu.py "
        + " ".join(sys.argv[1:])
        + "`",
        f"- config: `configs/imdb-minilm-cpu.yaml`; exit code {code}",
        f"- data: {records[0]['data_info'].get('source') if records else '?'}, "
        f"label balance {records[0]['data_info'].get('label_balance') if records else '?'}",
        "",
        (output_dir / "summary.md").read_text() if (output_dir / "summary.md").exists() else "",
        "## Accuracy per epoch (%)",
        "",
    ]
    verdicts = []
    for record in records:
        per_epoch = ", ".join(
            f"{100 * e['eval']['accuracy']:.1f}" for e in record["train_info"].get("epochs", [])
        )
        accuracy = record["metrics"].get("accuracy")
        ok = accuracy is not None and accuracy > TARGET_ACCURACY
        verdicts.append(ok)
        lines.append(
            f"- {record['run_id']}: {per_epoch} — target > {100 * TARGET_ACCURACY:.0f}%: "
            + ("met" if ok else "NOT met")
        )
    out = ROOT / "benchmarks" / "results" / f"minilm-cpu-{started:%Y-%m-%d}.md"
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out}")
    return 0 if code == 0 and verdicts and all(verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())
