"""Ctrl-C and SIGTERM, handled one way everywhere: both end the work as KeyboardInterrupt.

A job scheduler, `kill` or the runner stopping a run's process send SIGTERM; Python's default
for it is to die on the spot, which would leave no record. Inside `sigterm_as_interrupt()`
SIGTERM raises KeyboardInterrupt like Ctrl-C, so the code that records a canceled run is the
same for both; on the way out the caller's handlers are put back (a notebook's kernel keeps its
own). Both the runner (the experiment's process) and each run's own process use it.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_HANDLED = (signal.SIGINT, signal.SIGTERM)


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


class InterruptGuard:
    """What `sigterm_as_interrupt` yields: a way to re-assert its handler, or to stop
    interrupts while something must not be cut short."""

    def renew(self) -> None:
        """Turn SIGTERM into KeyboardInterrupt again, after a library replaced the handler
        (ray.init installs one that exits at once, skipping the canceled records)."""
        if _on_main_thread():
            signal.signal(signal.SIGTERM, _raise_interrupt)

    def ignore(self) -> None:
        """Ignore Ctrl-C and SIGTERM until the block ends: a second signal (the runner passing
        SIGTERM on after Ctrl-C) must not cut the writing of a record."""
        if _on_main_thread():
            for sig in _HANDLED:
                signal.signal(sig, signal.SIG_IGN)


def _on_main_thread() -> bool:
    # Python lets only the main thread set handlers; elsewhere (a notebook's worker thread)
    # the handlers are the main thread's business and are left alone.
    return threading.current_thread() is threading.main_thread()


@contextmanager
def sigterm_as_interrupt() -> Iterator[InterruptGuard]:
    """Within the block SIGTERM raises KeyboardInterrupt; on exit the SIGINT and SIGTERM
    handlers the caller had are restored, whatever the block changed in between."""
    if not _on_main_thread():
        yield InterruptGuard()
        return
    saved = {sig: signal.getsignal(sig) for sig in _HANDLED}
    guard = InterruptGuard()
    guard.renew()
    try:
        yield guard
    finally:
        for sig, handler in saved.items():
            if handler is not None:  # None: set outside Python, cannot be put back from here
                signal.signal(sig, handler)
