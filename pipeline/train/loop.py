"""A trial's training loop, DeepSpeed over a PromptedModel, run in the Tune trial's own process (one worker) or on
every worker of a Ray Train TorchTrainer (pipeline.train.session).

Each trial: take the frozen backbone (loaded once per process, pipeline.train.warm), build the method,
`deepspeed.initialize`, train only the method's parameters, and every `eval_every` steps evaluate and report the
validation metrics with a checkpoint: the prompt (safetensors + JSON) and every rank's optimizer slice
(pipeline.train.checkpoint). A trial restarted after a failure (Tune's or Train's retry, `--resume`) resumes from
its last reported checkpoint exactly: same prompt, Adam moments, schedule position and data order as a run that
never stopped.
"""

from __future__ import annotations

import logging
import math
import os
import random
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.distributed as dist

from pipeline import methods
from pipeline.artifact import load_prompt, read_prompt_meta, save_prompt
from pipeline.config import ExperimentConfig
from pipeline.data.encode import Encoder, Encoding, collate
from pipeline.data.sources import load_examples, with_data_labels
from pipeline.data.tasks import Task
from pipeline.evaluation.score import evaluate
from pipeline.methods.base import BackboneInfo, count_trainable
from pipeline.methods.units import absolute_groups
from pipeline.model.backbone import embedding_rows, input_embedding_rms
from pipeline.model.prompted import PromptedModel
from pipeline.model.zero import full_state
from pipeline.records import better
from pipeline.train.checkpoint import load_optimizer, save_optimizer
from pipeline.train.ds_config import ds_config
from pipeline.train.placement import record_current
from pipeline.train.progress import EvalProgress, Progress
from pipeline.train.session import LoopContext, Session, use_reserved_cpus
from pipeline.train.tracker import TrialTracker

if TYPE_CHECKING:  # deepspeed imports in seconds; the loop imports it when a trial starts
    from deepspeed import DeepSpeedEngine


OPTIMIZER_DIR = "optimizer"
"""Subdirectory of a trial checkpoint holding every rank's optimizer slice (pipeline.train.checkpoint)."""


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite; retrying from a checkpoint would not help."""


def batches(features: list[dict], batch_size: int, pad_id: int, seed: int, skip: int = 0):
    """Yield shuffled padded batches forever, reshuffled each epoch by (seed, epoch), after skipping `skip` batches.

    A run resumed at step k with skip = k * grad_accum sees exactly the batches an uninterrupted run would.
    """
    starts = list(range(0, len(features) - batch_size + 1, batch_size)) or [0]
    epoch, offset = divmod(skip, len(starts))
    while True:
        order = list(range(len(features)))
        random.Random(seed * 1_000_003 + epoch).shuffle(order)
        for i in starts[offset:]:
            yield collate([features[j] for j in order[i: i + batch_size]], pad_id)
        epoch, offset = epoch + 1, 0


def lr_lambda(warmup: int, total: int):
    """The schedule's factor at each step: linear warm-up over `warmup` steps, then linear decay to 0 at `total`."""

    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total - step) / max(1, total - warmup))
    return f


def make_optimizer(method, backbone, weight_decay: float, lr_units: str) -> torch.optim.AdamW:
    """AdamW over `method`'s groups with absolute lrs for `backbone`'s embedding scale (pipeline.methods.units): the
    one place a configured lr becomes the lr a tensor is moved by (trials, bench and peer check alike).

    Empty tensors leave the groups, and groups left empty go: an equal budget can leave a low-rank part rank 0 (EPT
    at 20 tokens of budget with a 12-token prompt), whose (s, 0) and (0, d) factors have nothing to train, and
    DeepSpeed's ZeRO optimizer fails on a group without parameters (IndexError in Stage1And2ZeroOptimizer)."""
    groups = [{**g, "params": [p for p in g["params"] if p.numel()]} for g in method.param_groups()]
    return torch.optim.AdamW(absolute_groups([g for g in groups if g["params"]], input_embedding_rms(backbone),
                                             lr_units), weight_decay=weight_decay)


def lr_line(optimizer: torch.optim.Optimizer) -> str:
    """'prompt 0.3 -> 0.00408, ...': each group's configured and absolute peak lr, for the trial's first line."""
    return ", ".join(f"{g['name']} {g['configured_lr']:.3g} -> {g.get('initial_lr', g['lr']):.3g}"
                     for g in optimizer.param_groups)


def build_engine(cfg: ExperimentConfig, prompted: PromptedModel, method, start_step: int):
    """DeepSpeed engine over `prompted` training only `method`'s param groups (AdamW at absolute lrs + warm-up/decay
    schedule, fast-forwarded to `start_step`)."""
    import deepspeed

    total = cfg.train.max_steps
    optimizer = make_optimizer(method, prompted.backbone, cfg.train.weight_decay, cfg.train.lr_units)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg.train.warmup_steps, total))
    with warnings.catch_warnings():  # fast-forwarding before any optimizer step is the point here, not a mistake
        warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler.step\(\)` before")
        for _ in range(start_step):  # resume the schedule where the checkpoint left it
            scheduler.step()
    engine, _, _, _ = deepspeed.initialize(model=prompted, optimizer=optimizer, lr_scheduler=scheduler,
                                           config=ds_config(cfg.train, cfg.backbone.dtype), dist_init_required=False)
    return engine


def train_step(engine, stream, grad_accum: int, device, step: int, world: int, progress=None) -> list[float]:
    """One optimizer step over `grad_accum` micro-batches from `stream`; their losses (rank-local)."""
    engine.train()
    losses = []
    for _ in range(grad_accum):
        batch = {k: v.to(device) for k, v in next(stream).items()}
        loss = engine(**batch).loss
        _check_finite(loss.detach(), step, world)
        engine.backward(loss)
        engine.step()  # DeepSpeed applies the update at the accumulation boundary only
        losses.append(loss.item())
        if progress is not None:
            progress.add(losses[-1], int(batch["attention_mask"].sum()) * world)
    return losses


def train_worker(loop_config: dict) -> None:
    """Ray Train worker entry point (multi-worker trials); `loop_config` = {"experiment": ExperimentConfig,
    "context": LoopContext}, both built and validated by the trial's driver (pipeline.tune.driver.make_trainer)."""
    from pipeline.train.session import TrainWorker

    run_trial(loop_config["experiment"], loop_config["context"], TrainWorker())


def run_trial(cfg: ExperimentConfig, ctx: LoopContext, session: Session) -> None:
    """One trial (or its rest, after a restart from a checkpoint) on `session` (pipeline.train.session): a Ray Train
    worker or the Tune trial's own process. The backbone and encoded data come from the process cache
    (pipeline.train.warm); the method, optimizer and engine are new."""
    from pipeline.train import warm

    rank, world, device = session.rank, session.world, session.device
    _setup_worker(cfg, ctx, rank, session.records_placement)
    torch.manual_seed(cfg.seed)
    ds = ds_config(cfg.train, cfg.backbone.dtype)
    model, tokenizer, info = warm.backbone(cfg.backbone, ds if cfg.train.zero_stage == 3 else None)
    d = cfg.data
    enc = Encoder(tokenizer, info.is_seq2seq, Encoding.of(d))
    # the same data through the same tokenizer: read and encoded once per process, keyed by the whole data section
    task, features, val_ex = warm.kept("data", warm.identity_of(asdict(cfg.backbone), asdict(d), cfg.seed),
                                       lambda: encoded_data(d, enc, cfg.seed))
    rows = embedding_rows(model, tokenizer, enc.label_tokens(task))  # label tokens: the 'labels' prompt init
    method = methods.build(cfg.method, info, rows, seed=cfg.seed)
    start_step, restored_dir = _restore_prompt(method, info, session.checkpoint())
    if start_step >= cfg.train.max_steps:
        # Finished before its search driver died, but the restored search had not recorded it: end with the
        # final result again (Tune requires the metric in a trial's last result); nothing is trained or logged.
        session.report(read_prompt_meta(restored_dir)["metrics"])
        return

    features = features[rank::world]
    engine = build_engine(cfg, PromptedModel(model, method, info.is_seq2seq), method, start_step)
    lrs = _absolute_lrs(engine)
    if restored_dir is not None:
        why = load_optimizer(engine, restored_dir / OPTIMIZER_DIR, rank, world, cfg.train.zero_stage)
        if why and rank == 0:
            print(f"[promptfarm] resuming at step {start_step} with fresh Adam moments: {why}", flush=True)
    stream = batches(features, cfg.train.batch_size, tokenizer.pad_token_id, cfg.seed + rank,
                     skip=start_step * cfg.train.grad_accum)
    label = f"trial {(ctx.trial_key or 'local').rpartition('/')[2]}"
    tracker = progress = None
    if rank == 0:
        tracker = TrialTracker(ctx)
        tracker.log_params({f"lr_abs.{name}": lr for name, lr in lrs.items()})
        progress = Progress(label, start_step, cfg.train.max_steps, cfg.train.progress_every,
                            cfg.train.progress_seconds, log=tracker.log_metrics)
        print(f"[promptfarm] {label} training from step {start_step} on {torch.get_num_threads()} torch threads "
              f"(train.cpus_per_worker={cfg.train.cpus_per_worker:g}), {count_trainable(method):,} trainable params; "
              f"lr {lr_line(engine.optimizer)} (embedding RMS {engine.optimizer.param_groups[0]['embedding_rms']:.4g}, "
              f"train.lr_units={cfg.train.lr_units})", flush=True)
    losses: list[float] = []
    best = None
    trial = _Reporting(cfg, engine, method, info, task, enc.encoding, session, tracker)
    stepping = time.perf_counter()  # compute_s: seconds since the first step began (steps, evals, checkpoints)
    for step in range(start_step + 1, cfg.train.max_steps + 1):
        losses += train_step(engine, stream, cfg.train.grad_accum, device, step, world, progress)
        if progress is not None:
            progress.step(step)
        if step % cfg.train.eval_every and step != cfg.train.max_steps:
            continue
        engine.eval()
        evaluating = time.perf_counter()
        metrics = evaluate(engine.module, enc, task, val_ex, cfg.train.eval_batch_size, device,
                           progress=EvalProgress(f"{label} step {step}", len(val_ex)) if rank == 0 else None)
        metrics.update(step=step, train_loss=sum(losses) / len(losses), trainable_params=count_trainable(method),
                       resumed_from=start_step,  # > 0 after a restart from a prompt checkpoint
                       compute_s=time.perf_counter() - stepping,  # steps, evals and checkpoints so far
                       eval_s=time.perf_counter() - evaluating)  # this evaluation's share (bench-search's split)
        losses.clear()
        value = metrics[ctx.metric]
        improved = better(value, best, ctx.mode)
        best = value if improved else best
        _report(trial, step, metrics, improved)


def encoded_data(d, enc: Encoder, seed: int):
    """(task with its label set, encoded training features, validation examples) of data section `d`."""
    task = with_data_labels(d.task, d.train_file)
    features = enc.examples(task, load_examples(task, "train", d.train_file, d.max_train_samples, seed))
    return task, features, load_examples(task, "validation", d.validation_file, d.max_eval_samples, seed)


def _absolute_lrs(engine) -> dict[str, float]:
    """{group name: absolute peak lr} of the engine's optimizer (before the schedule's factor)."""
    return {g["name"]: g["initial_lr"] if "initial_lr" in g else g["lr"] for g in engine.optimizer.param_groups}


def _setup_worker(cfg: ExperimentConfig, ctx: LoopContext, rank: int, records_placement: bool) -> None:
    """CPU threads and accelerator, quiet DeepSpeed, and (rank 0 of a Train worker group) the placement record."""
    if not cfg.train.use_gpu:
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
        use_reserved_cpus(cfg.train.cpus_per_worker)  # not Ray's default of 1 thread
    import deepspeed.utils

    deepspeed.utils.logger.setLevel("WARNING")  # its per-step INFO lines would bury the progress lines
    for name in ("ray.train._internal.storage", "ray.train.v2._internal.execution.storage"):
        logging.getLogger(name).setLevel(logging.WARNING)  # "Checkpoint successfully created at" per report
    if rank == 0 and ctx.trial_key and records_placement:
        record_current(ctx.trial_key)


def _restore_prompt(method, info, local: Path | None) -> tuple[int, Path | None]:
    """(step, `local`) of the checkpoint the trial restarts from, its prompt loaded into `method`; (0, None) on a
    fresh start. The directory is kept: the optimizer state is read from it later."""
    if local is None:
        return 0, None
    restored, meta = load_prompt(local, info)
    method.load_state_dict(restored.state_dict())
    return int(meta["step"]), local


@dataclass
class _Reporting:
    """What every report of one trial writes with: fixed for the trial, built once in run_trial."""

    cfg: ExperimentConfig
    engine: DeepSpeedEngine
    method: torch.nn.Module
    info: BackboneInfo
    task: Task
    encoding: Encoding
    session: Session
    tracker: TrialTracker | None


def _report(t: _Reporting, step: int, metrics: dict, improved: bool) -> None:
    """Every rank reports one checkpoint part (merged into one directory by Ray Train): rank 0 the prompt, every
    rank its optimizer slice under optimizer/; rank 0 logs the metrics and, when improved, the prompt to MLflow."""
    cfg, rank, world = t.cfg, t.session.rank, t.session.world
    state = full_state(t.method)  # collective under ZeRO-3: every rank gathers
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / OPTIMIZER_DIR).mkdir()
        save_optimizer(t.engine, Path(tmp) / OPTIMIZER_DIR, rank, world, cfg.train.zero_stage)
        if rank == 0:
            save_prompt(tmp, cfg.method, state, t.info, t.task, t.encoding, extra={"step": step, "metrics": metrics})
            t.tracker.log(metrics, step, tmp if improved else None)
        t.session.report(metrics, tmp)


def _check_finite(loss: torch.Tensor, step: int, world: int) -> None:
    """Raise on every rank together if any rank's loss is NaN/inf (a lone raise would hang the others)."""
    bad = torch.tensor([0.0 if math.isfinite(float(loss)) else 1.0])
    if world > 1:
        dist.all_reduce(bad)
    if bad.item():
        raise NonFiniteLossError(f"training loss is {float(loss)} at step {step}; expected a finite value "
                                 f"(lower the learning rate or check the data)")
