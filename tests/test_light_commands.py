"""`peftbench report` and `peftbench methods` run without torch, Transformers or PEFT: they
read records and the method registry, and should not pay seconds of imports for a model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from test_report import write_experiment

HEAVY = ("torch", "transformers", "peft")

# Runs one command in a fresh interpreter, then prints which heavy libraries it imported.
PROBE = f"""
import json, sys
from peftbench.cli import main
code = main(sys.argv[1:])
print(json.dumps({{"code": code, "loaded": [m for m in {HEAVY!r} if m in sys.modules]}}))
"""


def _heavy_imports(args: list[str]) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *args], capture_output=True, text=True, check=True
    )
    outcome = json.loads(done.stdout.strip().splitlines()[-1])
    assert outcome["code"] == 0, done.stderr
    return outcome["loaded"]


def test_a_heavy_module_does_show_in_sys_modules() -> None:
    # The checks below mean something: importing what `run` needs does load torch.
    done = subprocess.run(
        [sys.executable, "-c", "import sys, peftbench.models; print('torch' in sys.modules)"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.strip() == "True"


@pytest.mark.parametrize("args", [["methods", "--json"], ["methods", "--help-text"]])
def test_methods_command_imports_no_model_library(args: list[str]) -> None:
    assert _heavy_imports(args) == []


def test_report_command_imports_no_model_library(tmp_path: Path) -> None:
    experiment = write_experiment(tmp_path / "exp")
    out = tmp_path / "report"
    assert _heavy_imports(["report", str(experiment), "--out", str(out), "--format", "md"]) == []
    assert (out / "report.md").exists()
