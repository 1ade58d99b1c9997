"""Ctrl-C and SIGTERM, handled one way everywhere: both end the work as KeyboardInterrupt.

A job scheduler, `kill` or the runner stopping a run's process send SIGTERM; Python's default
for it is to die on the spot, which would leave no record. Inside `sigterm_as_interrupt()`
SIGTERM raises KeyboardInterrupt like Ctrl-C, so the code that records a canceled run is the
same for both; on the way out the caller's handlers are put back (a notebook's kernel keeps its
own). Both the runner (the experiment's process) and each run's own process use it.

A KeyboardInterrupt raised while Python runs a weakref finalizer or a `__del__` is printed and
dropped ("Exception ignored in ..."), and the run's memory tracker runs a finalizer for every
freed tensor: about one Ctrl-C in fifty landed there and was lost. So the handler also notes the
signal, and the training, evaluation and serving loops call `raise_if_interrupted()` at every
batch (`plan`'s memory simulation, which runs the tracker too, at every step).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_HANDLED = (signal.SIGINT, signal.SIGTERM)
_interrupted = False  # set by the handler; read by raise_if_interrupted


def _raise_interrupt(signum: int, frame: Any) -> None:
    global _interrupted
    _interrupted = True
    raise KeyboardInterrupt


def raise_if_interrupted() -> None:
    """Raise KeyboardInterrupt if a signal came in inside the block, even one whose exception
    Python dropped (it landed in a finalizer)."""
    if _interrupted:
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
    """Within the block SIGTERM raises KeyboardInterrupt like Ctrl-C, and both are noted for
    `raise_if_interrupted`; on exit the SIGINT and SIGTERM handlers the caller had are restored,
    whatever the block changed in between."""
    global _interrupted
    if not _on_main_thread():
        yield InterruptGuard()
        return
    saved = {sig: signal.getsignal(sig) for sig in _HANDLED}
    guard = InterruptGuard()
    guard.renew()
    # Ctrl-C the same way, noted too; unless it is ignored (a shell's background job) or
    # someone installed their own handler.
    if saved[signal.SIGINT] is signal.default_int_handler:
        signal.signal(signal.SIGINT, _raise_interrupt)
    try:
        yield guard
    finally:
        _interrupted = False  # a signal of this block is its business, not the next code's
        for sig, handler in saved.items():
            if handler is not None:  # None: set outside Python, cannot be put back from here
                signal.signal(sig, handler)
