"""Progress of long loops: a live bar on a terminal, plain lines in a log file.

On a terminal, tqdm redraws one line with carriage returns. Anywhere else (a pipe, a file, a
CI log) that would leave thousands of '\\r' updates on one enormous line, so `progress` writes
a line through the peftbench logger instead, at each tenth of the loop, and only once the loop
has run long enough to need it (a short loop is covered by the line its caller prints at the
end, e.g. the epoch summary).
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

from peftbench.logs import LOG

# Off a terminal: a line per this fraction of the loop, once the loop is older than this.
LINE_EVERY = 0.1
QUIET_FOR_S = 30.0


class LineProgress:
    """tqdm's interface (update, set_postfix, context manager), written as occasional lines."""

    def __init__(self, total: int, desc: str, unit: str, quiet_for_s: float = QUIET_FOR_S) -> None:
        self.total, self.desc, self.unit = total, desc.strip(), unit
        self.quiet_for_s = quiet_for_s
        self.done = 0
        self.postfix = ""
        self._started = time.monotonic()
        self._next_mark = LINE_EVERY

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def set_postfix(self, **values: Any) -> None:
        self.postfix = ", ".join(f"{key} {value}" for key, value in values.items())

    def update(self, count: int = 1) -> None:
        self.done += count
        if not self.total or self.done / self.total < self._next_mark:
            return
        fraction = self.done / self.total
        while self._next_mark <= fraction:
            self._next_mark += LINE_EVERY
        elapsed = time.monotonic() - self._started
        if elapsed < self.quiet_for_s or self.done >= self.total:
            return
        rate = self.done / elapsed
        left = (self.total - self.done) / rate if rate else float("nan")
        LOG.info(
            f"  {self.desc}: {self.done}/{self.total} {self.unit} ({100 * fraction:.0f}%), "
            f"{elapsed:.0f} s, about {left:.0f} s left"
            + (f", {self.postfix}" if self.postfix else "")
        )


def progress_bar(total: int, desc: str, unit: str) -> Any:
    """A progress display for a loop of `total` units: tqdm on a terminal, lines elsewhere."""
    if sys.stderr.isatty() and LOG.getEffectiveLevel() <= logging.INFO:
        from tqdm.auto import tqdm

        return tqdm(total=total, desc=desc, unit=unit)
    if LOG.getEffectiveLevel() > logging.INFO:
        return LineProgress(total, desc, unit, quiet_for_s=float("inf"))
    return LineProgress(total, desc, unit)
