"""The search driver killed mid-search: `promptfarm search --resume ID` (Tuner.restore) finishes it with no trial
result lost or duplicated and exactly one registry version. The search runs as a Ray job on a real Ray head, as on
a cluster; SIGKILL of its driver process is the fault (a lost head-node process, an OOM kill)."""

from __future__ import annotations

import os
import signal

import psutil
import pytest

from .conftest import ROOT
from .servers import wait_until

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
    wait_until(lambda: ended(), "a first finished trial", timeout=600)
    (driver,) = [p for p in psutil.process_iter(["cmdline"]) if str(tmp_path / "tm") in " ".join(p.info["cmdline"] or
                 []) and "jobs.search" in (p.info["cmdline"] or [])]
    os.kill(driver.pid, signal.SIGKILL)  # mid-search: the next trial is starting or training
    wait_until(lambda: jobs_client(ray_head.jobs).get_job_status(job_id).value == "FAILED", "the killed job")
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
