"""`peftbench run` in its own process, as every benchmark starts it: offline (no Hub), reading
the shared data directory unless PEFTBENCH_DATA_DIR says otherwise, and stopped with the
benchmark. A SIGTERM or SIGHUP the benchmark script gets is passed on to the run, which stops
gracefully (its records stay intact); the script then exits too, without writing a result from
the stopped run. Ctrl-C already reaches both through the terminal.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parent.parent
PASSED_ON = (signal.SIGTERM, signal.SIGHUP)


def offline_env(**extra: str) -> dict[str, str]:
    """This process's environment with the Hub off and the shared data directory as default."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    env.setdefault("PEFTBENCH_DATA_DIR", str(ROOT.parent / "shared" / "data"))
    return env | extra


def peftbench_run(
    config: Path | str, arguments: list[str], env: dict[str, str] | None = None, quiet: bool = False
) -> int:
    """`peftbench run CONFIG ARGUMENTS` from the repository root; its exit status."""
    command = [sys.executable, "-m", "peftbench.cli", "run", str(config), *arguments]
    stdout = subprocess.DEVNULL if quiet else None
    return call_passing_signals(command, env or offline_env(), stdout)


def call_passing_signals(
    command: list[str], env: dict[str, str] | None = None, stdout: int | IO | None = None
) -> int:
    """Run `command` and wait for it. A SIGTERM or SIGHUP that arrives meanwhile is sent on to
    it; once it has stopped, this process exits with 128 + that signal's number."""
    child = subprocess.Popen(command, env=env, cwd=ROOT, stdout=stdout)
    received: list[int] = []

    def pass_on(signum: int, _frame: object) -> None:
        received.append(signum)
        child.send_signal(signum)

    previous = {signum: signal.signal(signum, pass_on) for signum in PASSED_ON}
    try:
        code = child.wait()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if received:
        sys.exit(128 + received[0])
    return code
