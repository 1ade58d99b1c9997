"""The one interrupt handler: SIGTERM as Ctrl-C inside the block, the caller's handlers after."""

from __future__ import annotations

import os
import signal

import pytest
from conftest import drop_a_ctrl_c

from peftbench.interrupts import raise_if_interrupted, sigterm_as_interrupt


def _own_handler(signum: int, frame: object) -> None:
    raise AssertionError("the caller's handler ran inside the block")


def test_sigterm_raises_keyboard_interrupt_and_handlers_come_back() -> None:
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    signal.signal(signal.SIGTERM, _own_handler)
    try:
        with pytest.raises(KeyboardInterrupt), sigterm_as_interrupt():
            os.kill(os.getpid(), signal.SIGTERM)
        assert signal.getsignal(signal.SIGTERM) is _own_handler
        assert signal.getsignal(signal.SIGINT) is before[signal.SIGINT]
    finally:
        signal.signal(signal.SIGTERM, before[signal.SIGTERM])


def test_renew_and_ignore_are_undone_on_exit() -> None:
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    with sigterm_as_interrupt() as interrupts:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # as ray.init does with its own
        interrupts.renew()
        assert signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, before[signal.SIGTERM])
        interrupts.ignore()
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_IGN
        os.kill(os.getpid(), signal.SIGTERM)  # ignored: nothing is raised
    assert {sig: signal.getsignal(sig) for sig in before} == before


@pytest.mark.usefixtures("ctrl_c_as_in_a_terminal")
def test_a_ctrl_c_that_python_dropped_is_raised_at_the_next_check() -> None:
    with sigterm_as_interrupt():
        raise_if_interrupted()  # nothing pressed yet: nothing raised
        dropped = drop_a_ctrl_c()
        assert [type(e) for e in dropped] == [KeyboardInterrupt]  # lost without the check
        with pytest.raises(KeyboardInterrupt):
            raise_if_interrupted()
    raise_if_interrupted()  # outside the block (a loop called on its own): nothing raised
    with sigterm_as_interrupt():
        raise_if_interrupted()  # a new block starts with nothing pressed
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_an_ignored_ctrl_c_stays_ignored() -> None:
    saved = signal.signal(signal.SIGINT, signal.SIG_IGN)  # a shell's background job
    try:
        with sigterm_as_interrupt():
            assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
            os.kill(os.getpid(), signal.SIGINT)
            raise_if_interrupted()
    finally:
        signal.signal(signal.SIGINT, saved)
