"""The search driver killed mid-search: `promptfarm search --resume ID` (Tuner.restore) finishes it with no trial
result lost or duplicated and exactly one registry version. The search runs as a Ray job on a real Ray head, as on
a cluster; SIGKILL of its driver process is the fault (a lost head-node process, an OOM kill)."""

from __future__ import annotations

import json
import os
import signal

import psutil
import pytest
from ray.train import UserCallback

from .conftest import ROOT
from .servers import tree_state, wait_until

pytestmark = pytest.mark.slow
SMOKE = ROOT / "jobs" / "configs" / "smoke.yaml"


def _runs(client, role: str):
    exp = client.get_experiment_by_name("smoke")
    return [] if exp is None else client.search_runs([exp.experiment_id],
                                                     filter_string=f"tags.promptfarm.role = '{role}'")


def test_killed_driver_resumes_without_losing_or_duplicating_results(ray_head, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from pipeline.cli import app
    from pipeline.submit import client as jobs_client
    from pipeline.tracking.runs import mlflow_client

    monkeypatch.chdir(ROOT)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    args = ["jobs/configs/smoke.yaml", f"storage_path={tmp_path / 'ray'}", f"backbone.name_or_path={tmp_path / 'tm'}",
            "search.num_samples=3", "search.grace_period=2", "train.max_steps=6", "train.eval_every=3",
            "tracking.model_name=resumed"]
    submit = ["submit", "--address", ray_head.jobs, "--tracking-uri", uri]
    first = CliRunner().invoke(app, [*submit, "--no-wait", *args])
    assert first.exit_code == 0, first.output
    job_id = first.output.split("submitted ", 1)[1].split()[0]
    client = mlflow_client(uri)
    ended = lambda: [r for r in _runs(client, "trial") if "promptfarm.outcome" in r.data.tags]  # noqa: E731
    # Stalls, not total time, fail the waits: a loaded machine trains slowly but keeps writing results and logs.
    wait_until(lambda: ended(), "a first finished trial", progress=lambda: tree_state(tmp_path, ray_head.temp))
    (driver,) = [p for p in psutil.process_iter(["cmdline"]) if str(tmp_path / "tm") in " ".join(p.info["cmdline"] or
                 []) and "jobs.search" in (p.info["cmdline"] or [])]
    os.kill(driver.pid, signal.SIGKILL)  # mid-search: the next trial is starting or training
    wait_until(lambda: jobs_client(ray_head.jobs).get_job_status(job_id).value == "FAILED", "the killed job",
               progress=lambda: tree_state(ray_head.temp))
    before = {r.data.tags["promptfarm.trial_id"]: r for r in ended()}
    (parent,) = _runs(client, "search")
    search_id = parent.data.tags["promptfarm.search_id"]

    resumed = CliRunner().invoke(app, [*submit, *args, "--", "--resume", search_id])
    assert resumed.exit_code == 0, resumed.output[-5000:]
    assert f"search id: {search_id}" in resumed.output

    runs = _runs(client, "trial")
    trial_ids = [r.data.tags["promptfarm.trial_id"] for r in runs]
    assert len(trial_ids) == len(set(trial_ids)) == 3, trial_ids  # one MLflow run per trial, across the restore
    for run in runs:
        assert run.data.tags["promptfarm.outcome"] in ("completed", "pruned"), run.data.tags
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "val_loss")]
        assert steps == sorted(set(steps)) and steps, steps  # no report logged twice
    for trial_id, run in before.items():  # what finished before the kill is kept as it was
        after = client.get_run(run.info.run_id)
        assert after.data.metrics["val_loss"] == run.data.metrics["val_loss"]
        assert after.data.tags["promptfarm.outcome"] == run.data.tags["promptfarm.outcome"], trial_id
    assert _runs(client, "search")[0].info.run_id == parent.info.run_id  # the same parent run, finished
    assert client.get_run(parent.info.run_id).info.status == "FINISHED"
    versions = client.search_model_versions("name = 'resumed'")
    assert [v.tags["search_id"] for v in versions] == [search_id]
    assert "registered resumed version 1 (champion)" in resumed.output


def test_trial_finished_before_a_restore_ends_with_its_final_result(tmp_path, ray_cluster, monkeypatch):
    """A restored search re-runs a trial whose end its driver never recorded: the trial's trainer (same name and
    storage) resumes at its last step, trains nothing, logs nothing, and reports its final result again: Tune
    rejects a trial whose last result lacks the search metric, which would fail the whole search."""
    from pipeline.backbone import ensure_backbone
    from pipeline.config import load_config
    from pipeline.tracking.runs import experiment_id, mlflow_client
    from pipeline.tune.driver import make_trainer
    from pipeline.tune.search import resolve_paths

    monkeypatch.chdir(ROOT)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    exp = resolve_paths(load_config(SMOKE, [
        f"storage_path={tmp_path / 'ray'}", f"tracking.tracking_uri={uri}",
        f"backbone.name_or_path={tmp_path / 'tm'}", "train.max_steps=3", "train.eval_every=3"]))
    ensure_backbone(exp.backbone)
    client = mlflow_client(uri)
    run_id = client.create_run(experiment_id(client, exp)).info.run_id
    context = {"metric": "val_loss", "mode": "min", "tracking_uri": uri, "run_id": run_id, "trial_key": ""}
    first, again = tmp_path / "first.jsonl", tmp_path / "again.jsonl"
    make_trainer(exp, context, "trial-again", [RecordReports(first)]).fit()
    make_trainer(exp, context, "trial-again", [RecordReports(again)]).fit()
    (final,) = _lines(first)
    assert final["step"] == 3 and final["resumed_from"] == 0
    # what TuneReportCallback would forward to Tune: one report, the final result again
    assert _lines(again) == [final]
    assert [m.step for m in client.get_metric_history(run_id, "val_loss")] == [3]  # not logged twice


class RecordReports(UserCallback):
    """Appends each report's rank-0 metrics to a JSONL file (the callback runs in Train's controller actor)."""

    def __init__(self, path) -> None:
        self.path = str(path)

    def after_report(self, run_context, metrics, checkpoint) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(metrics[0]) + "\n")


def _lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
