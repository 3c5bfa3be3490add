"""The suite table builder: scores, averages, ties, failed tasks, markdown and JSON."""

import json

import pytest

from pipeline.config import ConfigError
from pipeline.suite.config import load_suite_config
from pipeline.suite.table import Cell, TaskResult, build_table, table_json, to_markdown

from .conftest import ROOT


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
