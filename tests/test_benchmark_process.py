"""benchmarks/peftbench_process.py: a benchmark killed with SIGTERM stops the run it started
(which then stops gracefully) and exits without going on, rather than leaving it running."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import REPO

# A stand-in for `peftbench run`: says it is ready (with its pid), and on SIGTERM writes that it
# stopped.
CHILD = """
import os, signal, sys, time
from pathlib import Path
folder = Path(sys.argv[1])
def stop(signum, frame):
    (folder / "child-stopped").write_text(str(signum))
    sys.exit(3)
signal.signal(signal.SIGTERM, stop)
(folder / "child-ready").write_text(str(os.getpid()))
time.sleep(120)
"""

# A benchmark script: runs the child through call_passing_signals, then would write a result.
BENCHMARK = """
import sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from peftbench_process import call_passing_signals
folder = Path(sys.argv[2])
code = call_passing_signals([sys.executable, "-c", sys.argv[3], str(folder)])
(folder / "benchmark-went-on").write_text(str(code))
"""


@pytest.fixture(autouse=True)
def _no_child_left(tmp_path: Path) -> Iterator[None]:
    yield
    ready = tmp_path / "child-ready"
    if ready.exists() and ready.read_text():  # a failed test may have left the child running
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(ready.read_text()), signal.SIGKILL)


def _start(tmp_path: Path) -> subprocess.Popen:
    benchmark = subprocess.Popen(
        [sys.executable, "-c", BENCHMARK, str(REPO / "benchmarks"), str(tmp_path), CHILD]
    )
    deadline = time.monotonic() + 60
    ready = tmp_path / "child-ready"
    while not (ready.exists() and ready.read_text()):  # the pid written, not just the file
        assert time.monotonic() < deadline and benchmark.poll() is None, "the child never started"
        time.sleep(0.05)
    return benchmark


def test_sigterm_to_a_benchmark_reaches_its_run_and_ends_the_benchmark(tmp_path: Path) -> None:
    benchmark = _start(tmp_path)
    benchmark.send_signal(signal.SIGTERM)
    assert benchmark.wait(timeout=60) == 128 + signal.SIGTERM
    assert (tmp_path / "child-stopped").read_text() == str(int(signal.SIGTERM))
    assert not (tmp_path / "benchmark-went-on").exists()


def test_a_run_that_ends_by_itself_hands_its_status_to_the_benchmark(tmp_path: Path) -> None:
    benchmark = _start(tmp_path)
    # The child is stopped from outside, not through the benchmark: its status (3) comes back.
    os.kill(int((tmp_path / "child-ready").read_text()), signal.SIGTERM)
    assert benchmark.wait(timeout=60) == 0
    assert (tmp_path / "benchmark-went-on").read_text() == "3"
