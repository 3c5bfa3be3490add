"""A tracking store that cannot be written when a trial ends is one line from the status callback, never an
exception that Tune turns into a TuneError ending the whole search."""

from __future__ import annotations

from types import SimpleNamespace

from pipeline.records import SearchRef
from pipeline.tune.callbacks import MlflowTrialStatus


def test_an_unwritable_store_is_one_line_and_the_search_goes_on(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("pipeline.train.placement.release", lambda key: False)
    broken = tmp_path / "mlflow.db"
    broken.write_bytes(b"this is not a sqlite database" * 100)  # a corrupt (or unreadable) store
    ref = SearchRef("s1", f"sqlite:///{broken}", "0", "parent", "val_loss", "min", 3)
    status = MlflowTrialStatus(ref, max_steps=10)
    trial = SimpleNamespace(trial_id="abc_00000", last_result={"step": 10}, error_file=None)
    status.on_trial_complete(0, [trial], trial)  # must not raise
    status.on_trial_error(0, [trial], trial)
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.strip()]
    assert len(lines) == 2 and all(ln.startswith("[promptfarm] could not record trial abc_00000's outcome in the "
                                                 f"tracking store sqlite:///{broken} (") for ln in lines), lines
    assert all(ln.endswith("; the search goes on") for ln in lines)
