"""A tiny suite end to end on the tests' local Ray cluster: two task searches, every method's best trial and the
frozen backbone scored on each report split, a failed task in its column, MLflow nesting, and a resume that
re-runs nothing finished and registers nothing twice."""

from __future__ import annotations

import pytest

from pipeline.suite.config import SuiteTask, load_suite_config
from tests.conftest import ROOT

pytestmark = pytest.mark.slow


def test_suite_scores_every_method_marks_a_failed_task_and_resumes_without_rerunning(tmp_path, ray_cluster,
                                                                                     monkeypatch):
    from pipeline.records import SUITE_TAG
    from pipeline.suite.run import run_suite
    from pipeline.tracking.runs import mlflow_client

    monkeypatch.chdir(ROOT)  # the config's fixture paths are relative to the repository
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    scfg = load_suite_config(ROOT / "jobs" / "configs" / "suite-tiny.yaml")
    scfg.overrides += [f"storage_path={tmp_path / 'ray'}", f"tracking.tracking_uri={uri}",
                       f"backbone.name_or_path={tmp_path / 'tiny-llama'}"]
    missing = tmp_path / "missing.tsv"
    scfg.tasks.append(SuiteTask("broken", {"task": "sst2", "train_file": str(missing)}))
    s = run_suite(scfg)

    by_task = {r.task: r for r in s.results}
    assert [r.task for r in s.results] == ["sst2", "rte", "broken"]
    assert by_task["broken"].status == "failed" and str(missing) in by_task["broken"].reason
    assert "\n" not in by_task["broken"].reason
    for name in ("sst2", "rte"):
        r = by_task[name]
        assert r.status == "done" and set(r.cells) == {"pt", "dept", "frozen"}, r
        assert all(0.0 <= c.score <= 1.0 for c in r.cells.values())
        assert r.cells["pt"].trial_steps == r.cells["dept"].trial_steps == 6  # one 6-step trial each
        assert r.trial_steps == 12 and r.cells["frozen"].params == 0
        assert r.cells["dept"].params > r.cells["pt"].params > 0
        assert {c.n for c in r.cells.values()} == {32 if name == "sst2" else 6}  # every report row (rte: limit 16 > 6)
        assert all(c.interval[0] <= c.score <= c.interval[1] for c in r.cells.values())  # accuracy: Wilson
        assert [p[0] for p in r.cells["pt"].curve] == [3, 6]  # the scored trial's evaluations, by step
    assert "| rte (failed)" not in s.markdown and "| broken (failed) |" in s.markdown
    assert s.table["trial_steps"] == 24

    client = mlflow_client(uri)
    suite_run = client.get_run(s.run_id)
    assert suite_run.data.tags[SUITE_TAG] == s.suite_id and suite_run.info.status == "FINISHED"
    assert {a.path for a in client.list_artifacts(s.run_id)} >= {"table.md", "table.json", "scores.png", "curves.png",
                                                                   "tasks"}
    exp = suite_run.info.experiment_id
    searches = client.search_runs([exp], "tags.`promptfarm.role` = 'search'")
    assert len(searches) == 2 and {r.data.tags["mlflow.parentRunId"] for r in searches} == {s.run_id}
    trials = len(client.search_runs([exp], "tags.`promptfarm.role` = 'trial'"))
    versions = {n: len(client.search_model_versions(f"name = '{n}'")) for n in ("sst2-tiny-llama", "rte-tiny-llama")}
    assert versions == {"sst2-tiny-llama": 1, "rte-tiny-llama": 1}

    # Killed after rte's search finished but before the suite recorded it: resume restores that search from its
    # Tune state (no trial re-run), skips the finished sst2 task, retries the failed one, registers nothing twice.
    client.set_tag(s.run_id, "task.rte", "running")
    again = run_suite(scfg, resume=s.suite_id)
    assert again.suite_id == s.suite_id and again.run_id == s.run_id
    assert len(client.search_runs([exp], "tags.`promptfarm.role` = 'trial'")) == trials
    assert len(client.search_runs([exp], "tags.`promptfarm.role` = 'search'")) == 2
    assert {n: len(client.search_model_versions(f"name = '{n}'")) for n in versions} == versions
    again_by_task = {r.task: r for r in again.results}
    assert again_by_task["sst2"] == by_task["sst2"]  # read back from the suite run, not re-scored
    assert {m: c.score for m, c in again_by_task["rte"].cells.items()} == {m: c.score for m, c in
                                                                           by_task["rte"].cells.items()}
    assert again_by_task["broken"].status == "failed"

    with pytest.raises(LookupError, match="suite 'nope' not found"):
        run_suite(scfg, resume="nope")
