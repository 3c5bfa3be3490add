"""End to end on a real local Ray cluster: ASHA search with DeepSpeed on CPU, MLflow sqlite + registry, pull, predict.

Slow (minutes on 2 cores) but part of the default suite: it is the product's main path.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from ray.train import UserCallback
from safetensors.torch import load_file

from pipeline.artifact import CONFIG_FILE, TENSORS_FILE
from pipeline.config import load_config
from pipeline.train.loop import OPTIMIZER_DIR
from tests.conftest import ROOT
from tests.e2e.conftest import PROGRESS, SMOKE, THREADS

pytestmark = pytest.mark.slow


def _cli(*args: str, cwd) -> str:
    out = subprocess.run([sys.executable, "-m", "pipeline.cli", *args], cwd=cwd, capture_output=True, text=True,
                         timeout=300, env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def test_search_prunes_registers_pulls_predicts(shared_search, tmp_path):
    from pipeline import methods
    from pipeline.tracking.runs import mlflow_client

    s, uri, out = shared_search.summary, shared_search.uri, shared_search.output
    assert {"10", "24"} <= set(re.findall(PROGRESS, out)), out[-3000:]
    # once per trial start, on as many torch threads as the worker reserved CPUs (smoke: train.cpus_per_worker=1)
    started = re.findall(THREADS, out)
    assert len(started) >= len(s.trials) and set(started) == {"1"}, out[-3000:]

    # ASHA ran every trial to a decision and stopped at least one early, mid-trial.
    assert len(s.trials) == len(methods.names()) and not [t for t in s.trials if t.status == "failed"]
    pruned = [t for t in s.trials if t.status == "pruned"]
    assert pruned and all(t.reports < 4 for t in pruned)
    assert all(t.reports == 4 for t in s.trials if t.status == "completed")
    best = min(t.best for t in s.trials)
    assert s.best_value == pytest.approx(best)

    # MLflow: parent run + one child per trial with params and per-eval metric history; champion registered.
    client = mlflow_client(uri)
    children = client.search_runs([client.get_experiment_by_name("smoke").experiment_id],
                                  filter_string=f"tags.`promptfarm.search_id` = '{s.search_id}' and "
                                                "tags.`promptfarm.role` = 'trial'")
    assert sorted(r.data.params["method"] for r in children) == methods.names()
    outcomes = sorted(r.data.tags["promptfarm.outcome"] for r in children)
    assert outcomes == sorted(t.status for t in s.trials)
    history = client.get_metric_history(s.best_run_id, "val_loss")
    assert [m.step for m in history] == [6, 12, 18, 24][: len(history)] and len(history) >= 1
    reg = s.registration
    champion = client.get_model_version_by_alias(reg.model_name, "champion")
    (best_trial,) = [t for t in s.trials if t.best == best]
    assert reg.champion and str(champion.version) == reg.version
    assert champion.tags["method"] == best_trial.method and champion.tags["metric"] == "val_loss"
    assert float(champion.tags["metric_value"]) == pytest.approx(s.best_value)

    # A fresh process pulls the champion: tensors equal the best trained checkpoint's.
    pulled_dir = tmp_path / "pulled"
    _cli("pull", reg.model_name, "--out", str(pulled_dir), "--tracking-uri", uri, cwd=tmp_path)
    pulled = load_file(str(pulled_dir / TENSORS_FILE))
    trained = load_file(f"{s.best_checkpoint}/{TENSORS_FILE}")
    assert pulled.keys() == trained.keys() and all(torch.equal(pulled[k], trained[k]) for k in pulled)

    # ...and predicts with it, agreeing with an in-process predictor.
    from pipeline.evaluation.predictor import Predictor

    texts = ["a gripping , funny film", "a dull , tedious mess"]
    lines = _cli("predict", str(pulled_dir), *texts, cwd=tmp_path).strip().splitlines()
    assert [ln.split("\t") for ln in lines] == [[lab, t] for lab, t in zip(Predictor.load(pulled_dir).predict(texts),
                                                                           texts, strict=True)]
    assert all(ln.split("\t")[0] in {"positive", "negative"} for ln in lines)


def test_zero3_two_workers_trains_dept_on_t5_and_a_refit_of_its_finished_trial_reports_it_again(
        tmp_path, ray_cluster, monkeypatch):
    """ZeRO-3 shards a frozen T5 over 2 ranks; DePT's two param groups train; checkpoint = MLflow artifact; the
    finished trial's trainer, fit again, reports its final result and trains and logs nothing."""
    from pipeline import methods
    from pipeline.model.backbone import embedding_rows, load_backbone
    from pipeline.tracking.runs import mlflow_client
    from pipeline.tune.search import run_search

    monkeypatch.chdir(ROOT)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = load_config(SMOKE, [
        f"storage_path={tmp_path / 'ray'}", f"tracking.tracking_uri={uri}", f"backbone.name_or_path={tmp_path / 't5'}",
        "name=zero3", "train.zero_stage=3", "train.num_workers=2", "train.cpus_per_worker=0.5", "train.max_steps=8",
        "train.eval_every=4", "search.num_samples=1", "search.default_space=false", "search.space={}",
        "tracking.register=false", "backbone.init_tiny=t5",
        "method={name: dept, num_tokens: 4, max_length: 64, lr: 0.3, lr_lowrank: 0.01}"])
    s = run_search(cfg)
    assert [t.status for t in s.trials] == ["completed"] and s.trials[0].reports == 2 and s.registration is None
    trained = load_file(f"{s.best_checkpoint}/{TENSORS_FILE}")
    client = mlflow_client(uri)
    artifact = client.download_artifacts(s.best_run_id, "prompt", str(tmp_path / "art"))
    logged = load_file(f"{artifact}/{TENSORS_FILE}")
    assert all(torch.equal(trained[k], logged[k]) for k in trained)
    # The checkpoint merges both ranks' optimizer slices (exact resume); the logged prompt holds the prompt only.
    assert {f.name for f in (Path(s.best_checkpoint) / OPTIMIZER_DIR).iterdir()} == {
        f"optimizer-rank{r}.{ext}" for r in (0, 1) for ext in ("safetensors", "json")}
    assert {f.name for f in Path(artifact).iterdir()} == {CONFIG_FILE, TENSORS_FILE}

    # Gathered from the ZeRO-3 shards: full shapes, and moved away from the seeded initialisation.
    model, tok, info = load_backbone(cfg.backbone)
    assert info.is_seq2seq and info.model_type == "t5"
    init = methods.build(cfg.method, info, embedding_rows(model, tok), seed=cfg.seed).state_dict()  # as the trial
    assert {k: tuple(v.shape) for k, v in trained.items()} == {k: tuple(v.shape) for k, v in init.items()}
    assert not torch.equal(trained["prompt"], init["prompt"])
    assert trained["lowrank_b"].abs().sum() > 0  # B starts at zero; the second param group trained it

    # A restored search re-runs a trial whose end its driver never recorded: the trial's trainer (same name and
    # storage) resumes at its last step, trains nothing, logs nothing, and reports its final result again: Tune
    # rejects a trial whose last result lacks the search metric, which would fail the whole search.
    from pipeline.train.session import LoopContext
    from pipeline.tune.cluster import resolve_paths
    from pipeline.tune.driver import make_trainer, trainer_name

    history = client.get_metric_history(s.best_run_id, "val_loss")
    (trial,) = s.trials
    again = tmp_path / "again.jsonl"
    context = LoopContext(s.metric, s.mode, uri, s.best_run_id, f"{s.search_id}/{trial.trial_id}")
    make_trainer(resolve_paths(cfg), context, trainer_name(s.search_id, trial.trial_id), [RecordReports(again)]).fit()
    (final,) = [json.loads(line) for line in again.read_text().splitlines()]  # what Tune would be given: one report
    assert [m.step for m in history] == [4, 8]
    assert (final["step"], final["resumed_from"]) == (8, 0)  # the step-8 report as the trial first made it
    assert final["val_loss"] == pytest.approx(history[-1].value)
    assert [(m.step, m.value) for m in client.get_metric_history(s.best_run_id, "val_loss")] == [
        (m.step, m.value) for m in history]  # not logged twice


class RecordReports(UserCallback):
    """Appends each report's rank-0 metrics to a JSONL file (the callback runs in Train's controller actor)."""

    def __init__(self, path) -> None:
        self.path = str(path)

    def after_report(self, run_context, metrics, checkpoint) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(metrics[0]) + "\n")


def test_every_method_trains_through_deepspeed_in_a_ray_trial(shared_search):
    """The shared search ran one Ray trial per registered method (method_grid), each a DeepSpeed engine over the tiny
    LLaMA: every trial ended completed or pruned and its checkpointed prompt moved away from the method's seeded
    initialisation, every tensor of it."""
    from pipeline import methods
    from pipeline.artifact import load_prompt
    from pipeline.model.backbone import embedding_rows, load_backbone

    s, cfg = shared_search.summary, shared_search.cfg
    assert sorted(t.method for t in s.trials) == methods.names()
    assert all(t.status in ("completed", "pruned") and t.steps >= 6 for t in s.trials), s.trials
    model, tok, info = load_backbone(cfg.backbone)
    for trial in s.trials:
        # one-worker trials train in Tune's trial process: their checkpoints are Tune's, in the trial's directory
        (run_dir,) = (shared_search.root / "ray" / s.search_id).glob(f"driver_*_{trial.trial_id}_*")
        ckpts = sorted(p for p in run_dir.glob("checkpoint_*") if p.is_dir())
        assert ckpts, f"{trial.method}: no checkpoint in {run_dir}"
        ckpt = ckpts[-1]  # the last report's (timestamped names sort in time order)
        trained, meta = load_prompt(ckpt, info)
        init = methods.build(methods.config_class(trial.method)(**meta["config"]), info, embedding_rows(model, tok),
                             seed=0)  # the trial's own init (same seed, same special-token exclusion)
        still = [k for k, v in trained.state_dict().items() if torch.equal(v, init.state_dict()[k])]
        assert not still, f"{trial.method}: {still} did not move in {trial.steps} steps"
