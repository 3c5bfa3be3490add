"""Restoring searches. The cluster path first: a search submitted as a Ray job to a real Ray head (`ray start
--head` on loopback), tracking over HTTP to a real `mlflow server` (sqlite backend, artifacts proxied by the server),
its driver SIGKILLed mid-search (a lost head-node process, an OOM kill); `promptfarm search --resume ID`
(Tuner.restore) finishes it with no trial result lost or duplicated and exactly one registry version, whose champion
is pulled and served from the server. Then restores on the tests' local cluster: Ctrl+C, a checkpoint newer than
Tune's snapshot."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import psutil
import pytest

from tests.conftest import ROOT
from tests.servers import tree_state, wait_until

pytestmark = pytest.mark.slow
SMOKE = ROOT / "jobs" / "configs" / "smoke.yaml"


def _runs(client, role: str):
    exp = client.get_experiment_by_name("smoke")
    return [] if exp is None else client.search_runs([exp.experiment_id],
                                                     filter_string=f"tags.promptfarm.role = '{role}'")


def test_killed_submitted_driver_resumes_without_losing_or_duplicating_results_and_its_champion_serves(
        ray_head, mlflow_server, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from pipeline.cli import app
    from pipeline.submit import client as jobs_client
    from pipeline.tracking.runs import mlflow_client

    monkeypatch.chdir(ROOT)
    uri = mlflow_server  # runs, artifacts and the registry live on the server, not in any local store
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
    resumed_job = resumed.output.split("submitted ", 1)[1].split()[0]
    assert resumed.output.rstrip().endswith(f"{resumed_job} SUCCEEDED")
    statuses = {j.submission_id: j.status.value for j in jobs_client(ray_head.jobs).list_jobs()}
    assert (statuses[job_id], statuses[resumed_job]) == ("FAILED", "SUCCEEDED")

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
    _champion_pulls_and_serves_from(mlflow_server, "resumed", tmp_path / "prompt")


def _champion_pulls_and_serves_from(server: str, model_name: str, out: Path) -> None:
    """`promptfarm pull` fetches the champion's prompt from the server; MLflow's pyfunc flavour loads it by alias
    from the server and labels new text."""
    import mlflow
    import pandas as pd
    from typer.testing import CliRunner

    from pipeline.artifact import read_prompt_meta
    from pipeline.cli import app

    pulled = CliRunner().invoke(app, ["pull", model_name, "--out", str(out), "--tracking-uri", server])
    assert pulled.exit_code == 0, pulled.output
    assert read_prompt_meta(out)["method"] == "pt"
    mlflow.set_tracking_uri(server)
    mlflow.set_registry_uri(server)
    try:
        model = mlflow.pyfunc.load_model(f"models:/{model_name}@champion")
        labels = model.predict(pd.DataFrame({"text": ["a gripping, funny film", "dull and lifeless"]}))
    finally:
        mlflow.set_tracking_uri(None)
        mlflow.set_registry_uri(None)
    assert len(labels) == 2 and set(labels) <= {"negative", "positive"}


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["sigint", "sigterm"])
def test_ctrl_c_saves_the_search_and_resume_finishes_it(tmp_path, ray_cluster, signum, code):
    """SIGINT (or SIGTERM, as `ray job stop`, Kubernetes and systemd send it) to `promptfarm search` after a first
    trial completed: exit 130 (143) with the `--resume` command (not
    Tune's `Tuner.restore` hint), the search run closed KILLED and nothing registered; `--resume` then finishes the
    same search, labels every trial that reached max_steps completed, and registers once. Trials are long enough
    (300 steps) that the second is still training when the signal comes."""
    import subprocess
    import sys
    import time

    import ray

    from pipeline.tracking.runs import mlflow_client

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    args = [sys.executable, "-m", "pipeline.cli", "search", str(SMOKE), f"storage_path={tmp_path / 'ray'}",
            f"backbone.name_or_path={tmp_path / 'tm'}", f"tracking.tracking_uri={uri}", "search.num_samples=2",
            "search.grace_period=3", "train.max_steps=300", "train.eval_every=100",  # a warm trial: seconds
            "tracking.model_name=ctrl-c"]
    # The driver joins this session's cluster (a second local cluster on the machine breaks Ray Train's cleaner).
    env = {**os.environ, "RAY_ADDRESS": ray.get_runtime_context().gcs_address}
    log = tmp_path / "search.log"  # a file, not a pipe: Ray's processes inherit the descriptor and outlive the CLI
    with open(log, "w") as sink:
        proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 600
    while " completed: " not in log.read_text() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.5)
    assert proc.poll() is None, log.read_text()[-3000:]
    proc.send_signal(signum)
    rc = proc.wait(timeout=300)
    out = log.read_text()
    (parent,) = _search_runs(mlflow_client(uri))
    search_id = parent.data.tags["promptfarm.search_id"]
    assert rc == code, out[-3000:]
    (hint,) = [ln for ln in out.splitlines() if ln.startswith("interrupted: ")]
    assert hint.startswith(f"interrupted: {search_id} is saved; resume it with: promptfarm search {SMOKE} ")
    assert hint.endswith(f"--resume {search_id}")
    assert "Tuner.restore" not in out and "registered" not in out
    client = mlflow_client(uri)
    assert client.get_run(parent.info.run_id).info.status == "KILLED"
    assert client.search_model_versions("name = 'ctrl-c'") == []

    resumed = subprocess.run([*args, "--resume", search_id], cwd=ROOT, env=env, capture_output=True, text=True,
                             timeout=900)
    assert resumed.returncode == 0, (resumed.stdout + resumed.stderr)[-3000:]
    assert "registered ctrl-c version 1 (champion)" in resumed.stdout and "no trial completed" not in resumed.stderr
    assert client.get_run(parent.info.run_id).info.status == "FINISHED"
    trials = [ln.split() for ln in resumed.stdout.splitlines() if ln.split()[:1] and ln.split()[0].count("_") == 1
              and ln.split()[2:3] in (["completed"], ["pruned"], ["failed"])]
    assert len(trials) == 2 and all(t[2] == "completed" for t in trials), resumed.stdout  # 300 of 300 steps each


def _search_runs(client):
    exp = client.get_experiment_by_name("smoke")
    return client.search_runs([exp.experiment_id], filter_string="tags.promptfarm.role = 'search'")


def test_in_process_trial_restarts_from_the_newest_checkpoint_in_its_own_directory(tmp_path, ray_cluster):
    """Tune restores a trial from what its last experiment snapshot recorded; a checkpoint the trial persisted after
    that snapshot (its driver killed in between) is still the one it resumes from, so no step is trained twice."""
    from ray import tune

    def trainable(config):
        from ray.train._internal.session import get_storage

        from pipeline.artifact import CONFIG_FILE
        from pipeline.train.session import InProcess

        session = InProcess(use_gpu=False)
        fresh = session.checkpoint()
        for index, step in ((0, 3), (1, 6)):  # what an earlier run of this trial persisted, unknown to Tune
            d = Path(get_storage().trial_fs_path) / f"checkpoint_{index:06d}"
            d.mkdir(parents=True)
            (d / CONFIG_FILE).write_text(json.dumps({"step": step}))
        restored = session.checkpoint()
        tune.report({"fresh": fresh is None, "step": json.loads((restored / CONFIG_FILE).read_text())["step"]})

    (result,) = tune.Tuner(trainable, run_config=tune.RunConfig(storage_path=str(tmp_path))).fit()
    assert result.error is None, result.error
    assert result.metrics["fresh"] is True and result.metrics["step"] == 6
