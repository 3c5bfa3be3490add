"""End-of-search table and plots from a search summary."""

from __future__ import annotations

from pipeline.records import SearchSummary, TrialSummary
from pipeline.tracking.plots import figures
from pipeline.tune.report import summary_text


def _summary() -> SearchSummary:
    s = SearchSummary("s-1", "val_accuracy", "max")
    s.trials = [
        TrialSummary("t0", {"method.name": "pt", "pt:method.lr": 0.3, "dept:method.lr": 0.4}, 4, 0.8, "completed",
                     "pt", 800, 24, 12.5, [(6, 0.5), (12, 0.6), (18, 0.7), (24, 0.8)]),
        TrialSummary("t1", {"method.name": "dept", "pt:method.lr": 0.1, "dept:method.lr": 0.4}, 1, 0.4, "pruned",
                     "dept", 640, 6, 3.0, [(6, 0.4)]),
    ]
    return s


def test_summary_shows_each_trials_own_hyperparameters_and_savings():
    text = summary_text(_summary())
    t0, t1 = (ln for ln in text.splitlines() if ln.startswith(("t0", "t1")))
    assert "pt" in t0 and "completed" in t0 and "{'method.lr': 0.3}" in t0 and "0.4" not in t0.split("{")[1]
    assert "dept" in t1 and "pruned" in t1 and "{'method.lr': 0.4}" in t1
    assert "2 trials (1 pruned, 0 failed); 30 trial-steps vs 48 without pruning" in text


def test_plots_draw_every_trial_with_pruned_dotted():
    figs = figures(_summary())
    curves = figs["metric_vs_step.png"].axes[0].get_lines()
    assert sorted(len(line.get_xdata()) for line in curves) == [1, 4]
    assert {line.get_linestyle() for line in curves} == {"-", ":"}
    points = figs["best_vs_params.png"].axes[0].collections
    assert sorted(tuple(c.get_offsets()[0]) for c in points) == [(640.0, 0.4), (800.0, 0.8)]


def test_progress_line_tells_pruned_from_completed_and_tracks_the_best():
    from types import SimpleNamespace as T

    from pipeline.tune.callbacks import ProgressLine

    lines: list[str] = []
    p = ProgressLine("val_loss", "min", max_steps=24, echo=lines.append)
    a = T(trial_id="a", status="PENDING", config={"method.name": "dept"}, last_result={})
    b = T(trial_id="b", status="PENDING", config={"method.name": "pt"}, last_result={})
    p.on_trial_start(0, [a, b], a)  # Tune still calls it PENDING here
    assert lines[-1].endswith("1 running, 1 pending, 0 completed, 0 pruned, 0 failed; best val_loss -")
    a.status = "RUNNING"
    p.on_trial_result(0, [a, b], a, {"val_loss": 5.0, "step": 6})
    p.on_trial_result(0, [a, b], a, {"val_loss": 5.5, "step": 12})  # worse: no line
    assert len(lines) == 2 and "best val_loss 5.0000 (dept, trial a)" in lines[-1]
    a.last_result = {"training_iteration": 2, "step": 12}  # Tune still calls it RUNNING here
    b.status = "RUNNING"
    p.on_trial_complete(0, [a, b], a)
    a.status = "TERMINATED"
    assert "trial a pruned: 1 running, 0 pending, 0 completed, 1 pruned, 0 failed" in lines[-1]
    p.on_trial_result(0, [a, b], b, {"val_loss": 4.0, "step": 6})
    b.last_result = {"training_iteration": 1, "step": 24}  # restored: one report, the final one
    p.on_trial_complete(0, [a, b], b)
    assert "0 running, 0 pending, 1 completed, 1 pruned, 0 failed; best val_loss 4.0000 (pt, trial b)" in lines[-1]
    p.on_trial_error(0, [a, b], T(trial_id="c", status="ERROR", config={}, last_result={}))
    assert "1 failed" in lines[-1]


def _result(trial_id: str, steps_values: list[tuple[int, float]], error=None):
    from types import SimpleNamespace as T

    import pandas as pd

    rows = [{"trial_id": trial_id, "step": s, "val_loss": v, "checkpoint_path": f"{trial_id}/{s}"}
            for s, v in steps_values]
    return T(metrics_dataframe=pd.DataFrame(rows) if rows else None, metrics={"trial_id": trial_id},
             config={"method.name": "pt"}, error=error)


def test_outcome_is_decided_by_the_last_step_so_a_restored_trial_reads_completed():
    """A trial that ended before a restore reports only its final result again: one report, step 24 of 24. By
    report count it read 'pruned' (and a resumed search with only such trials said 'no trial completed')."""
    from pipeline.tune.search import summarize

    grid = [_result("done", [(24, 0.5)]), _result("cut", [(6, 0.9), (12, 0.8)]),
            _result("full", [(6, 0.7), (12, 0.6), (18, 0.6), (24, 0.65)]), _result("bad", [], error="boom")]
    s = summarize(grid, "s", "val_loss", "min", 24, "pt")
    assert [t.status for t in s.trials] == ["completed", "pruned", "completed", "failed"]
    assert (s.best_trial, s.best_value, s.best_checkpoint) == ("done", 0.5, "done/24")


def test_best_trial_breaks_ties_by_fewer_steps_then_trial_id_in_any_order():
    """The search's best trial and the suite's best per method come from this one rule."""
    from pipeline.records import best_trial
    from pipeline.tune.search import summarize

    grid = [_result("b", [(6, 0.6), (12, 0.5)]), _result("c", [(6, 0.5)]), _result("a", [(6, 0.5)])]
    for order in (grid, grid[::-1]):
        s = summarize(order, "s", "val_loss", "min", 24, "pt")
        assert (s.best_trial, s.best_checkpoint) == ("a", "a/6")
    s = summarize(grid, "s", "val_loss", "max", 24, "pt")
    assert s.best_trial == "b" and s.best_value == 0.6 and s.best_checkpoint == "b/6"
    assert best_trial([], "max") is None
