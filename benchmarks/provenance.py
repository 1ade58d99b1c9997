"""The command line a benchmark result file shows: how to run that benchmark again from the
repository root, as it was run (its arguments as given, machine paths made relative to the
repository or cut short, so that nothing committed names the machine that ran it)."""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

from peftbench.report.paths import scrub, shown_path

ROOT = Path(__file__).resolve().parent.parent
# How every benchmark is started: the shared data directory beside the repository, the venv.
PREFIX = "PEFTBENCH_DATA_DIR=../shared/data .venv/bin/python"


def shown_command(argv: list[str] | None = None, omit: tuple[str, ...] = ()) -> str:
    """`argv` (default: this process's) as a command to run from the repository root, without
    the flags in `omit` (such as --commit-only, which does not make a result of its own)."""
    script, *arguments = sys.argv if argv is None else argv
    kept = [_shown_argument(argument) for argument in arguments if argument not in omit]
    return f"{PREFIX} {shlex.join([f'benchmarks/{Path(script).name}', *kept])}"


def _shown_argument(argument: str) -> str:
    """An argument with its machine paths shown as a report shows them: a whole path, or the
    value of KEY=PATH, even with spaces in it; paths inside other text too."""
    if _is_absolute(argument):
        return shown_path(argument, ROOT)
    key, equals, value = argument.partition("=")
    if equals and _is_absolute(value):
        return f"{key}={shown_path(value, ROOT)}"
    return scrub(argument, ROOT)


def _is_absolute(path: str) -> bool:
    return os.path.isabs(os.path.expanduser(path))
