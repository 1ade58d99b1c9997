"""benchmarks/gpu_check.py's CPU dry run: the GPU check script runs end to end at tiny sizes, and
its memory prediction matches its measurement for the study's four methods."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_gpu_check_dry_run_writes_predicted_and_measured_memory(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks/gpu_check.py"),
            "--dry-run",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((tmp_path / "gpu-check.json").read_text())
    assert [m["label"] for m in summary["methods"]] == ["full", "lora", "qlora", "ia3"]
    assert summary["checks"] == {"cuda": "not checked: dry run on CPU"}
    for method in summary["methods"]:
        for phase in ("train", "eval"):
            # Variable lengths (IMDb's distribution) against a max-length prediction: the
            # prediction is the worst case, never below the measurement, and close to it here
            # where the longest sampled batch reaches max_length.
            assert -1.0 <= method["error_percent"][phase] <= 10.0, method
        assert method["tokens_per_s"] > 0
    assert summary["methods"][2]["linear4bit_layers"] > 0
    assert "| qlora | train |" in (tmp_path / "gpu-check.md").read_text()
