"""Faults on a real local Ray cluster: a killed worker resumes from its last prompt checkpoint; a failing trial
is recorded with its reason and the search goes on."""

from __future__ import annotations

import os
import threading
import time

import psutil
import pytest

from pipeline.config import load_config
from tests.conftest import ROOT

pytestmark = pytest.mark.slow
SMOKE = ROOT / "jobs" / "configs" / "smoke.yaml"


def _kill_worker_after_first_report(storage, killed: list, done: threading.Event) -> None:
    """SIGKILL the process training the trial once Tune has taken its first report with a checkpoint (the trial's
    result.json lists it), so a restart must resume from it. A one-worker trial trains in the Tune trial actor
    itself (ray::ImplicitFunc); a multi-worker one in Ray Train workers (ray::RayTrainWorker).

    Only this test's cluster is touched: its raylet and workers are descendants of this process (ray.init started
    them), so another job's workers on the same machine are never killed."""
    ours = psutil.Process(os.getpid())
    while not killed and not done.is_set():  # no deadline: the search ending (however slowly) ends the watch
        if any(path.read_text().strip() for path in storage.glob("faults-*/driver_*/result.json")):
            for proc in ours.children(recursive=True):
                try:
                    if any(name in " ".join(proc.cmdline()) for name in ("ray::ImplicitFunc", "ray::RayTrainWorker")):
                        proc.kill()
                        killed.append(proc.pid)
                except psutil.NoSuchProcess:
                    continue
        time.sleep(0.2)


def test_killed_worker_resumes_from_checkpoint_and_search_completes(tmp_path, ray_cluster, monkeypatch):
    from pipeline.tune.search import run_search

    monkeypatch.chdir(ROOT)
    storage = tmp_path / "ray"
    cfg = load_config(SMOKE, [
        f"storage_path={storage}", f"tracking.tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}",
        f"backbone.name_or_path={tmp_path / 'tiny-llama'}", "name=faults", "search.num_samples=1",
        "search.default_space=false", "search.space={}", "train.max_failures=2", "tracking.register=false"])
    killed: list[int] = []
    done = threading.Event()
    killer = threading.Thread(target=_kill_worker_after_first_report, args=(storage, killed, done), daemon=True)
    killer.start()
    try:
        s = run_search(cfg)
    finally:
        done.set()
        killer.join()

    assert killed, "the worker was never killed: the test did not exercise a failure"
    assert not psutil.pid_exists(killed[0]) or psutil.Process(killed[0]).status() == psutil.STATUS_ZOMBIE
    (trial,) = s.trials
    assert trial.status == "completed" and trial.steps == cfg.train.max_steps, trial
    # The restarted worker group started from a reported prompt checkpoint, not from step 0.
    resumed = [r for r in _reports(storage) if r.get("resumed_from", 0) > 0]
    assert resumed and all(r["resumed_from"] % cfg.train.eval_every == 0 for r in resumed)
    assert [r["step"] for r in _reports(storage)][-1] == cfg.train.max_steps


def _reports(storage) -> list[dict]:
    import json

    (path,) = storage.glob("faults-*/driver_*/result.json")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_failed_trial_recorded_in_mlflow_and_search_continues(tmp_path, ray_cluster, monkeypatch):
    """A diverging learning rate: the prompt overflows the RMSNorm at step 3 and the loss is NaN; that trial fails
    alone, recorded with its reason, and the search goes on. A bad data row no longer reaches a trial: pre-flight
    reads every row (tests/unit/data/test_data_files.py), and the in-trial reader raises the same line."""
    from pipeline.tracking.runs import mlflow_client
    from pipeline.tune.search import run_search

    monkeypatch.chdir(ROOT)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    key, values, error = "method.lr", "[1.0e+30, 0.3]", "training loss is nan"
    cfg = load_config(SMOKE, [
        f"storage_path={tmp_path / 'ray'}", f"tracking.tracking_uri={uri}", "name=failing",
        f"backbone.name_or_path={tmp_path / 'tiny-llama'}", "search.num_samples=2", "search.default_space=false",
        "search.seed=2",  # seed 2 samples the second value first, then the first: both run
        f"search.space={{{key}: {{choice: {values}}}}}",
        "train.max_steps=6", "train.eval_every=6", "train.max_failures=0", "tracking.register=false"])
    s = run_search(cfg)
    by_status = {t.status: t for t in s.trials}
    assert set(by_status) == {"failed", "completed"}, s.trials
    failed = by_status["failed"]
    assert error in failed.error and str(failed.params[key]) == str(yaml_first(values)), failed
    client = mlflow_client(uri)
    run = client.get_run(client.search_runs(
        [client.get_experiment_by_name("smoke").experiment_id],
        filter_string=f"tags.`promptfarm.trial_id` = '{failed.trial_id}'")[0].info.run_id)
    assert run.info.status == "FAILED" and run.data.tags["promptfarm.outcome"] == "failed"
    assert error in run.data.tags["promptfarm.error"] and "\n" not in run.data.tags["promptfarm.error"]
    assert s.best_trial == by_status["completed"].trial_id


def yaml_first(values: str):
    """First value of a YAML list, parsed as the config parses it (paths stay as given: they were absolute)."""
    import yaml

    return yaml.safe_load(values)[0]
