"""Warm trials: trials that share a process share its frozen backbone and encoded data, and nothing else; the
second of two trials in one process equals the same trial run alone. The trial loop is the one a search runs
(run_trial), on a session that records what Tune would receive."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file

from pipeline.artifact import TENSORS_FILE
from pipeline.config import load_config
from tests.conftest import ROOT


class Recorded:
    """The session interface of pipeline.train.session, keeping each report and a copy of its checkpoint."""

    rank, world, device, records_placement = 0, 1, torch.device("cpu"), False

    def __init__(self, out: Path, restore: Path | None = None) -> None:
        self.out, self.restore, self.reports = out, restore, []

    def checkpoint(self) -> Path | None:
        return self.restore

    def report(self, metrics: dict, directory: str | None = None) -> None:
        self.reports.append(dict(metrics))
        if directory is not None:
            shutil.copytree(directory, self.out / f"step{metrics['step']}")


def _cfg(tiny_dir, method: str, lr: float):
    return load_config(ROOT / "jobs" / "configs" / "smoke.yaml", [
        f"backbone.name_or_path={tiny_dir}", "train.max_steps=4", "train.eval_every=2", "train.batch_size=4",
        f"method={{name: {method}, num_tokens: 4, lr: {lr}}}"])


def _trial(cfg, out: Path) -> Recorded:
    from pipeline.train.loop import run_trial
    from pipeline.train.session import LoopContext

    session = Recorded(out)
    out.mkdir()
    run_trial(cfg, LoopContext(metric="val_loss", mode="min"), session)
    return session


def test_second_trial_in_a_warm_process_equals_the_same_trial_alone(tiny_dirs, tmp_path, gloo_world):
    from pipeline.train import warm

    warm.forget()
    loads = []
    real = warm.kept

    def counting(kind, identity, build):  # counts real builds, keeps the real cache behaviour
        return real(kind, identity, lambda: (loads.append(kind), build())[1])

    warm.kept = counting
    try:
        first = _trial(_cfg(tiny_dirs["llama"], "dept", 0.5), tmp_path / "first")
        second = _trial(_cfg(tiny_dirs["llama"], "pt", 0.3), tmp_path / "second")  # warm: same backbone and data
        assert loads == ["backbone", "data"], loads  # loaded and encoded once for both trials
        warm.forget()
        alone = _trial(_cfg(tiny_dirs["llama"], "pt", 0.3), tmp_path / "alone")
        assert loads == ["backbone", "data", "backbone", "data"]
        other = _trial(_cfg(tiny_dirs["t5"], "pt", 0.3), tmp_path / "other")  # another identity evicts
        assert loads[-2:] == ["backbone", "data"] and len(warm._KEPT) == 2
    finally:
        warm.kept = real
        warm.forget()
    assert [r["step"] for r in second.reports] == [2, 4] and first.reports != second.reports
    for a, b in zip(second.reports, alone.reports, strict=True):
        assert {k: a[k] for k in ("val_loss", "train_loss", "step")} == {k: b[k] for k in ("val_loss", "train_loss",
                                                                                          "step")}
    warm_prompt = load_file(tmp_path / "second" / "step4" / TENSORS_FILE)
    alone_prompt = load_file(tmp_path / "alone" / "step4" / TENSORS_FILE)
    assert warm_prompt.keys() == alone_prompt.keys()
    assert all(torch.equal(warm_prompt[k], alone_prompt[k]) for k in warm_prompt)
    assert other.reports[-1]["step"] == 4


def test_a_restart_from_an_earlier_checkpoint_logs_each_step_once(tiny_dirs, tmp_path, gloo_world):
    """Killed after logging step 4 but before its checkpoint persisted: the trial restarts from step 2, re-trains
    step 4 to the same values and its MLflow run still holds one value per step."""
    from pipeline.tracking.runs import mlflow_client
    from pipeline.train.loop import run_trial
    from pipeline.train.session import LoopContext

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow_client(uri)
    exp = client.create_experiment("dedup", artifact_location=(tmp_path / "art").as_uri())  # not ./mlruns
    run_id = client.create_run(exp).info.run_id
    ctx = LoopContext(metric="val_loss", mode="min", tracking_uri=uri, run_id=run_id)
    cfg = _cfg(tiny_dirs["llama"], "pt", 0.3)
    first = Recorded(tmp_path / "first")
    first.out.mkdir()
    run_trial(cfg, ctx, first)
    again = Recorded(tmp_path / "again", restore=tmp_path / "first" / "step2")
    again.out.mkdir()
    run_trial(cfg, ctx, again)
    assert [r["step"] for r in again.reports] == [4] and again.reports[0]["resumed_from"] == 2
    assert again.reports[0]["val_loss"] == first.reports[1]["val_loss"]
    history = client.get_metric_history(run_id, "val_loss")
    assert [(m.step, m.value) for m in history] == [(r["step"], r["val_loss"]) for r in first.reports]
    assert [m.step for m in client.get_metric_history(run_id, "train_loss")] == [2, 4]
