"""The suite table builder: scores, averages, ties, failed tasks, markdown and JSON."""

import json

import pytest

from pipeline.config import ConfigError
from pipeline.suite.config import load_suite_config
from pipeline.suite.table import Cell, TaskResult, build_table, table_json, to_markdown
from tests.conftest import ROOT


def _done(task: str, scores: dict[str, float], steps: int = 10) -> TaskResult:
    cells = {m: Cell(s, 0 if m == "frozen" else 100, 0 if m == "frozen" else steps, None) for m, s in scores.items()}
    return TaskResult(task, "done", "accuracy", None, f"s-{task}", cells, steps * (len(scores) - 1))


def test_averages_best_and_trial_steps():
    results = [_done("sst2", {"pt": 0.8, "dept": 0.9, "frozen": 0.5}), _done("rte", {"pt": 0.6, "dept": 0.5,
                                                                                     "frozen": 0.55})]
    t = build_table(results, ["pt", "dept"])
    rows = {r["method"]: r for r in t["rows"]}
    assert [r["method"] for r in t["rows"]] == ["pt", "dept", "frozen"]
    assert rows["pt"]["average"] == pytest.approx(0.7) and rows["frozen"]["average"] == pytest.approx(0.525)
    assert t["best"] == {"sst2": ["dept"], "rte": ["pt"]} and t["trial_steps"] == 40
    md = to_markdown(t)
    assert "| dept | 100 | **90.0 (10 steps)** | 50.0 (10 steps) | 70.0 |" in md
    assert "| frozen | 0 | 50.0 | 55.0 | 52.5 |" in md


def test_ties_mark_every_tied_method_best():
    t = build_table([_done("sst2", {"pt": 0.75, "dept": 0.75, "frozen": 0.5})], ["pt", "dept"])
    assert t["best"] == {"sst2": ["pt", "dept"]}
    md = to_markdown(t)
    assert md.count("**75.0 (10 steps)**") == 2


def test_failed_task_keeps_its_column_with_the_reason_and_no_average_skips_it():
    failed = TaskResult("rte", "failed", reason="PreflightError: data.train_file '/x' not found")
    t = build_table([_done("sst2", {"pt": 0.8, "frozen": 0.5}), failed], ["pt"])
    rows = {r["method"]: r for r in t["rows"]}
    assert rows["pt"]["average"] == pytest.approx(0.8)  # over the tasks that produced scores
    md = to_markdown(t)
    assert "| method | params | sst2 (accuracy) | rte (failed) | average |" in md
    assert "| pt | 100 | **80.0 (10 steps)** | failed | 80.0 |" in md
    assert "- rte failed: PreflightError: data.train_file '/x' not found" in md


def test_a_method_missing_on_a_done_task_has_no_average():
    t = build_table([_done("sst2", {"pt": 0.8, "dept": 0.7}), _done("rte", {"pt": 0.6})], ["pt", "dept"],
                    frozen=False)
    rows = {r["method"]: r for r in t["rows"]}
    assert rows["dept"]["average"] is None and "| dept | 100 | 70.0 (10 steps) | — | — |" in to_markdown(t)


def test_json_round_trips_cells_and_task_results():
    r = _done("sst2", {"pt": 0.8, "frozen": 0.5})
    data = json.loads(json.dumps(table_json(build_table([r], ["pt"]))))
    assert data["rows"][0]["cells"]["sst2"]["score"] == 0.8
    from dataclasses import asdict

    assert TaskResult.from_dict(json.loads(json.dumps(asdict(r)))) == r


def test_suite_config_errors_name_the_task_and_key(tmp_path):
    bad = tmp_path / "s.yaml"
    bad.write_text(f"experiment: {ROOT / 'jobs/configs/smoke.yaml'}\ntasks:\n  - name: a\n    data: {{task: nope}}\n")
    with pytest.raises(ConfigError, match=r"task 'a': data.task='nope' is not a known task"):
        load_suite_config(bad)
    bad.write_text(f"experiment: {ROOT / 'jobs/configs/smoke.yaml'}\ntasks:\n  - {{name: a}}\n  - {{name: a}}\n")
    with pytest.raises(ConfigError, match="name 'a' appears twice"):
        load_suite_config(bad)
    bad.write_text("tasks: []\n")
    with pytest.raises(ConfigError, match="tasks=\\[\\] is empty"):
        load_suite_config(bad)


def test_wilson_interval_matches_the_closed_form_and_stays_in_bounds():
    from pipeline.data.metrics import wilson_interval

    lo, hi = wilson_interval(0.8, 872)  # Wilson (1927) at z=1.96: [0.7722, 0.8253]
    assert lo == pytest.approx(0.7722, abs=1e-4) and hi == pytest.approx(0.8253, abs=1e-4)
    assert wilson_interval(1.0, 10)[1] == 1.0 and wilson_interval(0.0, 10)[0] == 0.0
    assert wilson_interval(1.0, 10)[0] == pytest.approx(0.7225, abs=1e-4)  # not a zero-width interval at 100%
    wide, narrow = wilson_interval(0.5, 100), wilson_interval(0.5, 10_000)
    assert wide[1] - wide[0] > 9 * (narrow[1] - narrow[0])


def test_markdown_shows_intervals_and_report_size():
    r = _done("sst2", {"pt": 0.8, "frozen": 0.5})
    for c in r.cells.values():
        c.n, c.interval = 872, [c.score - 0.03, c.score + 0.02]
    md = to_markdown(build_table([r], ["pt"]))
    assert "**80.0 [77.0, 82.0] (10 steps)**" in md and "| 50.0 [47.0, 52.0] |" in md
    assert "- report examples: sst2 872" in md


def test_curve_figure_draws_one_line_per_method_and_the_frozen_reference():
    from pipeline.suite.plot import curve_figure

    r = _done("sst2", {"pt": 0.8, "dept": 0.7, "frozen": 0.5})
    r.cells["pt"].curve = [[10, 0.6, 2.0], [20, 0.8, 0.5]]
    r.cells["dept"].curve = [[10, 0.5, 3.0], [20, 0.7, 1.0]]
    fig = curve_figure(build_table([r], ["pt", "dept"]))
    top, bottom = fig.axes
    assert [ln.get_label() for ln in top.lines] == ["pt", "dept", "frozen (report)"]
    assert list(top.lines[0].get_ydata()) == [60.0, 80.0] and list(bottom.lines[1].get_ydata()) == [3.0, 1.0]
