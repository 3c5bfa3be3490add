"""Exact resume: a run stopped at step k and restarted from its checkpoint (prompt + every rank's optimizer slice)
gives the same losses and final prompt as one that never stopped, under ZeRO-2 and ZeRO-3, with and without
gradient accumulation. The same loop pieces as a Ray trial (build_engine, train_step, batches, the checkpoint
files), in one process with a gloo world of one."""

from __future__ import annotations

import warnings

import pytest
import torch

from pipeline import methods
from pipeline.artifact import load_prompt, save_prompt
from pipeline.config import load_config
from pipeline.data.builtin import get_task
from pipeline.data.encode import Encoder, Encoding
from pipeline.data.sources import load_examples
from pipeline.model.backbone import embedding_rows, load_backbone
from pipeline.model.prompted import PromptedModel
from pipeline.model.zero import full_state
from pipeline.train.checkpoint import load_optimizer, save_optimizer
from pipeline.train.ds_config import ds_config
from pipeline.train.loop import OPTIMIZER_DIR, batches, build_engine, train_step
from tests.conftest import FIXTURES, ROOT

STEPS, STOP = 6, 3


def _config(tiny_dir, zero_stage: int, grad_accum: int):
    return load_config(ROOT / "jobs" / "configs" / "smoke.yaml", [
        f"backbone.name_or_path={tiny_dir}", f"train.zero_stage={zero_stage}", f"train.grad_accum={grad_accum}",
        f"train.max_steps={STEPS}", "train.warmup_steps=2", "train.batch_size=4",
        "method={name: dept, num_tokens: 4, max_length: 64, lr: 0.3, lr_lowrank: 0.05}"])


def _run(cfg, first: int, last: int, restore=None, save=None, restore_optimizer: bool = True):
    """Steps first+1..last; (per-micro-batch losses, final method tensors)."""
    stage = cfg.train.zero_stage
    torch.manual_seed(cfg.seed)
    ds = ds_config(cfg.train, cfg.backbone.dtype)
    model, tok, info = load_backbone(cfg.backbone, zero3_config=ds if stage == 3 else None)
    method = methods.build(cfg.method, info, embedding_rows(model), seed=cfg.seed)
    if restore is not None:
        method.load_state_dict(load_prompt(restore, info)[0].state_dict())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        engine = build_engine(cfg, PromptedModel(model, method, info.is_seq2seq), method, first)
    # the schedule's fast-forward is deliberate: torch's "lr_scheduler.step() before optimizer.step()" is not shown
    assert not [w for w in caught if "lr_scheduler.step()" in str(w.message)]
    if restore is not None and restore_optimizer:
        assert load_optimizer(engine, restore / OPTIMIZER_DIR, 0, 1, stage) is None
    task = get_task("sst2")
    enc = Encoder(tok, False, Encoding(cfg.data.max_length, 8, ""))
    features = enc.examples(task, load_examples(task, "train", str(FIXTURES / "sst2_tiny" / "train.tsv"), None, 0))
    stream = batches(features, cfg.train.batch_size, tok.pad_token_id, cfg.seed, skip=first * cfg.train.grad_accum)
    losses = [x for step in range(first + 1, last + 1)
              for x in train_step(engine, stream, cfg.train.grad_accum, "cpu", step, 1)]
    state = full_state(method)
    if save is not None:
        (save / OPTIMIZER_DIR).mkdir(parents=True)
        save_prompt(save, cfg.method, state, info, "sst2", extra={"step": last})
        save_optimizer(engine, save / OPTIMIZER_DIR, 0, 1, stage)
    return losses, state


@pytest.mark.parametrize("grad_accum", [1, 2])
@pytest.mark.parametrize("zero_stage", [2, 3])
def test_stopped_and_resumed_run_equals_the_uninterrupted_one(zero_stage, grad_accum, tiny_dirs, tmp_path, gloo_world):
    cfg = _config(tiny_dirs["llama"], zero_stage, grad_accum)
    whole, final = _run(cfg, 0, STEPS)
    head, _ = _run(cfg, 0, STOP, save=tmp_path / "ckpt")
    tail, resumed = _run(cfg, STOP, STEPS, restore=tmp_path / "ckpt")
    fresh, _ = _run(cfg, STOP, STEPS, restore=tmp_path / "ckpt", restore_optimizer=False)
    assert len(whole) == STEPS * grad_accum
    torch.testing.assert_close(torch.tensor(head + tail), torch.tensor(whole), rtol=1e-6, atol=1e-6)
    for k in final:
        torch.testing.assert_close(resumed[k], final[k], rtol=1e-6, atol=1e-7, msg=k)
    # The check can fail: resuming with fresh Adam moments (the prompt alone) drifts from the uninterrupted run.
    assert max(abs(a - b) for a, b in zip(fresh[grad_accum:], whole[STOP * grad_accum + grad_accum:],
                                          strict=True)) > 1e-4


def test_a_different_layout_is_refused_with_the_reason(tiny_dirs, tmp_path, gloo_world):
    cfg = _config(tiny_dirs["llama"], 2, 1)
    _run(cfg, 0, 1, save=tmp_path / "ckpt")
    torch.manual_seed(0)
    model, _, info = load_backbone(cfg.backbone)
    method = methods.build(cfg.method, info, embedding_rows(model), seed=0)
    engine = build_engine(cfg, PromptedModel(model, method, False), method, 1)
    why = load_optimizer(engine, tmp_path / "ckpt" / OPTIMIZER_DIR, 0, 2, 2)  # as if restarted on 2 workers
    assert why == "optimizer state was saved with world=1, this run has world=2"
    assert load_optimizer(engine, tmp_path / "missing", 0, 1, 2).startswith("the checkpoint holds no optimizer")
