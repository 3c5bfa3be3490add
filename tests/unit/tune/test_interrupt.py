"""Ctrl+C during a search: Tune's own stop path runs (its event is set, state saved), the caller learns it was
interrupted, Tune's `Tuner.restore(...)` hint is replaced by the CLI's `--resume` command, and a second Ctrl+C
aborts at once."""

from __future__ import annotations

import logging
import os
import signal

import pytest


def test_sigint_stops_tune_through_its_own_handler_and_is_reported():
    from ray.tune.tune import _setup_signal_catching  # the function Tune's fit() runs; no Ray cluster needed

    from pipeline.tune.interrupt import Interruptible

    before = signal.getsignal(signal.SIGINT)
    with Interruptible() as stop:
        event = _setup_signal_catching()  # as inside Tuner.fit(): SIGINT left to us, SIGUSR1 is Tune's stop
        os.kill(os.getpid(), signal.SIGINT)
        assert event.wait(5), "Tune's stop event was not set"
        assert stop.interrupted
        with pytest.raises(KeyboardInterrupt):  # the second Ctrl+C is not swallowed
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is before
    assert "TUNE_DISABLE_SIGINT_HANDLER" not in os.environ


def test_no_interrupt_reads_as_not_interrupted_and_restores_handlers():
    from ray.tune.tune import _setup_signal_catching

    from pipeline.tune.interrupt import Interruptible

    usr1 = signal.getsignal(signal.SIGUSR1)
    with Interruptible() as stop:
        _setup_signal_catching()
    assert not stop.interrupted
    assert signal.getsignal(signal.SIGUSR1) is usr1  # Tune's handler does not outlive the search


def test_ctrl_c_before_tunes_loop_aborts_instead_of_killing_the_process_by_sigusr1():
    from pipeline.tune.interrupt import Interruptible

    with pytest.raises(KeyboardInterrupt), Interruptible() as stop:
        os.kill(os.getpid(), signal.SIGINT)
    assert stop.interrupted


def test_tunes_restore_hint_is_dropped_inside_and_kept_outside(caplog):
    from pipeline.tune.interrupt import Interruptible

    log = logging.getLogger("ray.tune.tune")
    hint = "Experiment has been interrupted ... Resume experiment with: Tuner.restore(path=\"/x\", trainable=...)"
    with caplog.at_level(logging.WARNING, logger="ray.tune.tune"):
        with Interruptible():
            log.warning(hint)
            log.warning("another warning")
        assert [r.getMessage() for r in caplog.records] == ["another warning"]
        log.warning(hint)
        assert caplog.records[-1].getMessage() == hint


def test_sigterm_stops_tune_like_ctrl_c_and_names_its_signal():
    """`ray job stop`, Kubernetes and systemd send SIGTERM: stop after the step and save, exit 143 in the CLI."""
    from ray.tune.tune import _setup_signal_catching

    from pipeline.tune.interrupt import Interrupted, Interruptible

    before = signal.getsignal(signal.SIGTERM)
    with Interruptible() as stop:
        event = _setup_signal_catching()
        os.kill(os.getpid(), signal.SIGTERM)
        assert event.wait(5), "Tune's stop event was not set"
        assert stop.interrupted and stop.signum == signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is before
    assert 128 + Interrupted("s", stop.signum).signum == 143 and 128 + Interrupted("s").signum == 130
