"""The command line a benchmark result file shows: how to run that benchmark again from the
repository root, as it was run (its arguments as given, machine paths made relative to the
repository or cut short, so that nothing committed names the machine that ran it)."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from peftbench.report.paths import scrub

ROOT = Path(__file__).resolve().parent.parent
# How every benchmark is started: the shared data directory beside the repository, the venv.
PREFIX = "PEFTBENCH_DATA_DIR=../shared/data .venv/bin/python"


def shown_command(argv: list[str] | None = None, omit: tuple[str, ...] = ()) -> str:
    """`argv` (default: this process's) as a command to run from the repository root, without
    the flags in `omit` (such as --commit-only, which does not make a result of its own)."""
    script, *arguments = sys.argv if argv is None else argv
    kept = [argument for argument in arguments if argument not in omit]
    line = shlex.join([f"benchmarks/{Path(script).name}", *kept])
    return f"{PREFIX} {scrub(line, ROOT)}"
