"""The per-worker training loop run by Ray Train's TorchTrainer: DeepSpeed over a PromptedModel.

Each trial: load the frozen backbone, build the method, `deepspeed.initialize`, train only the method's
parameters, and every `eval_every` steps evaluate and `ray.train.report` the validation metrics with a
checkpoint holding only the prompt (safetensors + JSON). Resumes from the last reported checkpoint when Ray
restarts the worker group after a failure.
"""

from __future__ import annotations

import math
import os
import random
import tempfile
from dataclasses import dataclass

import torch
import torch.distributed as dist

from pipeline import methods
from pipeline.backbone import embedding_rows, load_backbone
from pipeline.config import ExperimentConfig
from pipeline.data.encode import Encoder, collate
from pipeline.data.sources import load_examples
from pipeline.data.tasks import get_task
from pipeline.methods.base import count_trainable
from pipeline.methods.io import load_prompt, save_prompt
from pipeline.prompted import PromptedModel
from pipeline.train.ds_config import ds_config
from pipeline.train.evaluate import evaluate
from pipeline.train.progress import EvalProgress, Progress
from pipeline.train.zero import full_state


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite; retrying from a checkpoint would not help."""


@dataclass
class LoopContext:
    """What the driver passes each worker besides the experiment."""

    metric: str
    """Reported metric the search optimises, e.g. 'val_accuracy'."""
    mode: str
    """'max' or 'min' for `metric`."""
    tracking_uri: str | None = None
    """MLflow tracking URI for rank-0 logging (None: no MLflow)."""
    run_id: str | None = None
    """MLflow run of this trial."""
    trial_key: str | None = None
    """'<search id>/<trial id>': where rank 0 records its placement group for release (pipeline.tune.placement)."""


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


def _lr_lambda(warmup: int, total: int):
    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total - step) / max(1, total - warmup))
    return f


def train_worker(loop_config: dict) -> None:
    """Ray Train worker entry point; `loop_config` = {"experiment": dict, "context": dict}."""
    import ray.train

    cfg = ExperimentConfig.from_dict(loop_config["experiment"])
    ctx = LoopContext(**loop_config["context"])
    if not cfg.train.use_gpu:
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
        # Ray starts workers with OMP_NUM_THREADS=1 unless told otherwise; a CPU worker should use the cores it
        # reserved, rounded up (1.99 next to the trial driver's 0.01 on a 2-core machine gives 2 threads).
        torch.set_num_threads(max(1, math.ceil(cfg.train.cpus_per_worker)))
    import deepspeed
    import deepspeed.utils

    deepspeed.utils.logger.setLevel("WARNING")  # its per-step INFO lines would bury the progress lines

    rank, world = ray.train.get_context().get_world_rank(), ray.train.get_context().get_world_size()
    if rank == 0 and ctx.trial_key:
        from pipeline.tune.placement import record_current

        record_current(ctx.trial_key)
    device = ray.train.torch.get_device()
    torch.manual_seed(cfg.seed)
    task = get_task(cfg.data.task)

    ds = ds_config(cfg.train, cfg.backbone.dtype)
    model, tokenizer, info = load_backbone(cfg.backbone, zero3_config=ds if cfg.train.zero_stage == 3 else None)
    method = methods.build(cfg.method, info, embedding_rows(model), seed=cfg.seed)
    start_step = 0
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            restored, meta = load_prompt(d, info)
            method.load_state_dict(restored.state_dict())
            start_step = int(meta["step"])
        if start_step >= cfg.train.max_steps:
            # Finished before its search driver died, but the restored search had not recorded it: end with the
            # final result again (Tune requires the metric in a trial's last result); nothing is trained or logged.
            ray.train.report(meta["metrics"])
            return

    enc = Encoder(tokenizer, info.is_seq2seq, cfg.data.max_length, cfg.data.max_target_length)
    train_ex = load_examples(task, "train", cfg.data.train_file, cfg.data.max_train_samples, cfg.seed)
    val_ex = load_examples(task, "validation", cfg.data.validation_file, cfg.data.max_eval_samples, cfg.seed)
    features = enc.examples(task, train_ex)[rank::world]

    prompted = PromptedModel(model, method, info.is_seq2seq)
    total = cfg.train.max_steps
    optimizer = torch.optim.AdamW(method.param_groups(), weight_decay=cfg.train.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(cfg.train.warmup_steps, total))
    for _ in range(start_step):  # resume the schedule where the checkpoint left it
        scheduler.step()
    engine, _, _, _ = deepspeed.initialize(model=prompted, optimizer=optimizer, lr_scheduler=scheduler,
                                           config=ds, dist_init_required=False)
    tracker = _Tracker(ctx) if rank == 0 else None
    stream = batches(features, cfg.train.batch_size, tokenizer.pad_token_id, cfg.seed + rank,
                     skip=start_step * cfg.train.grad_accum)
    losses: list[float] = []
    best = None
    label = f"trial {(ctx.trial_key or 'local').rpartition('/')[2]}"
    progress = None
    if rank == 0:
        progress = Progress(label, start_step, total, cfg.train.progress_every, cfg.train.progress_seconds,
                            log=tracker.log_metrics)
        print(f"[promptfarm] {label} training from step {start_step} on {torch.get_num_threads()} torch threads "
              f"(train.cpus_per_worker={cfg.train.cpus_per_worker:g}), {count_trainable(method):,} trainable params",
              flush=True)
    for step in range(start_step + 1, total + 1):
        engine.train()
        for _ in range(cfg.train.grad_accum):
            batch = {k: v.to(device) for k, v in next(stream).items()}
            loss = engine(**batch).loss
            _check_finite(loss.detach(), step, world)
            engine.backward(loss)
            engine.step()
            losses.append(float(loss))
            if progress is not None:
                progress.add(float(loss), int(batch["attention_mask"].sum()) * world)
        if progress is not None:
            progress.step(step)
        if step % cfg.train.eval_every and step != total:
            continue
        engine.eval()
        metrics = evaluate(engine.module, enc, task, val_ex, cfg.train.eval_batch_size, device,
                           progress=EvalProgress(f"{label} step {step}", len(val_ex)) if rank == 0 else None)
        metrics.update(step=step, train_loss=sum(losses) / len(losses), trainable_params=count_trainable(method),
                       resumed_from=start_step)  # > 0 after a worker-group restart from a prompt checkpoint
        losses.clear()
        state = full_state(method)
        value = metrics[ctx.metric]
        improved = best is None or (value > best if ctx.mode == "max" else value < best)
        best = value if improved else best
        with tempfile.TemporaryDirectory() as tmp:
            ckpt = None
            if rank == 0:
                save_prompt(tmp, cfg.method, state, info, task.name, extra={"step": step, "metrics": metrics})
                tracker.log(metrics, step, tmp if improved else None)
                ckpt = ray.train.Checkpoint.from_directory(tmp)
            ray.train.report(metrics, checkpoint=ckpt)


def _check_finite(loss: torch.Tensor, step: int, world: int) -> None:
    """Raise on every rank together if any rank's loss is NaN/inf (a lone raise would hang the others)."""
    bad = torch.tensor([0.0 if math.isfinite(float(loss)) else 1.0])
    if world > 1:
        dist.all_reduce(bad)
    if bad.item():
        raise NonFiniteLossError(f"training loss is {float(loss)} at step {step}; expected a finite value "
                                 f"(lower the learning rate or check the data)")


class _Tracker:
    """Rank-0 MLflow logging into the trial's run, by explicit run id (no active-run global state)."""

    def __init__(self, ctx: LoopContext) -> None:
        self.client = None
        if ctx.tracking_uri and ctx.run_id:
            from pipeline.tracking.runs import mlflow_client

            self.client, self.run_id = mlflow_client(ctx.tracking_uri), ctx.run_id

    def log_metrics(self, metrics: dict, step: int) -> None:
        if self.client is None:
            return
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, float(v), now, step) for k, v in metrics.items()])

    def log(self, metrics: dict, step: int, prompt_dir: str | None) -> None:
        if self.client is None:
            return
        self.log_metrics(metrics, step)
        if prompt_dir is not None:  # best-so-far prompt of this trial
            self.client.log_artifacts(self.run_id, prompt_dir, artifact_path="prompt")
