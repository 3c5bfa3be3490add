"""The slow tests' wait: it fails on a stall (nothing observable changed for stall_s), never merely on total time
while the awaited system keeps moving, and the failure names what was last seen."""

import itertools
import time

import pytest

from tests.servers import tree_state, wait_until


def test_moving_progress_outlasts_the_stall_window():
    ticks, start = itertools.count(), time.monotonic()
    wait_until(lambda: time.monotonic() - start > 3.5, "slow but moving", progress=lambda: next(ticks), stall_s=2)


def test_a_stall_fails_with_what_was_last_seen():
    with pytest.raises(TimeoutError, match=r"stuck not ready: no progress for \d+ s; last seen 7; last check: not yet"):
        wait_until(lambda: False, "stuck", progress=lambda: 7, stall_s=2)


def test_the_cap_bounds_a_wait_that_always_moves():
    ticks = itertools.count()
    with pytest.raises(TimeoutError, match="still moving after"):
        wait_until(lambda: False, "endless", progress=lambda: next(ticks), stall_s=60, cap_s=2)


def test_tree_state_counts_files_and_bytes(tmp_path):
    assert tree_state(tmp_path) == (0, 0)
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "log").write_text("abc")
    (tmp_path / "b").write_text("de")
    assert tree_state(tmp_path) == (2, 5) and tree_state(tmp_path / "b", tmp_path / "missing") == (1, 2)
