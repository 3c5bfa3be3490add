"""Where an in-process trial restarts from: the newest checkpoint in its own storage directory, whatever Tune's last
experiment snapshot recorded (a driver killed between a report and the next snapshot restores older state)."""

from __future__ import annotations

import json

from pyarrow import fs

from pipeline.artifact import CONFIG_FILE
from pipeline.train.session import newest_checkpoint, trial_dirs


def _checkpoint(trial, index: int, step=None, text: str | None = None):
    d = trial / f"checkpoint_{index:06d}"
    d.mkdir(parents=True)
    if text is not None or step is not None:
        (d / CONFIG_FILE).write_text(text if text is not None else json.dumps({"step": step}))
    return d


def test_the_highest_step_wins_then_the_later_index(tmp_path):
    local = fs.LocalFileSystem()
    _checkpoint(tmp_path, 0, 3)
    want = _checkpoint(tmp_path, 1, 6)
    _checkpoint(tmp_path, 2, 3)  # a restart from an older snapshot wrote a later index at an earlier step
    assert newest_checkpoint(local, [str(tmp_path)]) == str(want)
    tie = _checkpoint(tmp_path, 3, 6)
    assert newest_checkpoint(local, [str(tmp_path)]) == str(tie)


def test_cut_off_or_foreign_directories_are_skipped(tmp_path):
    local = fs.LocalFileSystem()
    want = _checkpoint(tmp_path, 0, 3)
    _checkpoint(tmp_path, 1)  # persist cut off before prompt_config.json
    _checkpoint(tmp_path, 2, text='{"step": 9')  # cut off mid-file
    _checkpoint(tmp_path, 3, text='{"step": "9"}')  # not a step
    (tmp_path / "driver_artifacts" / CONFIG_FILE).parent.mkdir()
    (tmp_path / "driver_artifacts" / CONFIG_FILE).write_text('{"step": 99}')
    assert newest_checkpoint(local, [str(tmp_path)]) == str(want)


def test_no_checkpoint_or_no_directory_is_a_fresh_start(tmp_path):
    local = fs.LocalFileSystem()
    assert newest_checkpoint(local, [str(tmp_path)]) is None
    assert newest_checkpoint(local, [str(tmp_path / "absent")]) is None


def test_every_directory_of_the_trial_counts_and_no_other_trials(tmp_path):
    """A restore whose snapshot predates the trial's start gives it a new, re-timestamped directory."""
    local = fs.LocalFileSystem()
    first = tmp_path / "driver_e2b9d_00002_2_method_lr=0.27_2026-12-03_07-13-00"
    again = tmp_path / "driver_e2b9d_00002_2_method_lr=0.27_2026-12-03_07-13-06"
    other = tmp_path / "driver_e2b9d_00012_12_method_lr=0.27_2026-12-03_07-13-00"
    want = _checkpoint(first, 0, 3)
    again.mkdir()
    _checkpoint(other, 0, 6)
    dirs = trial_dirs(local, str(tmp_path), "e2b9d_00002")
    assert sorted(dirs) == [str(first), str(again)]
    assert newest_checkpoint(local, dirs) == str(want)
    assert trial_dirs(local, str(tmp_path / "absent"), "e2b9d_00002") == []
