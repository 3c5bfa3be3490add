"""Where a trial's loop runs, behind one small interface, so one loop (pipeline.train.loop.run_trial) serves both:

- `TrainWorker`: a Ray Train worker of a TorchTrainer (multi-worker trials: ZeRO across GPUs). Rank and world come
  from Train; reports go through `ray.train.report` and reach Tune via TuneReportCallback.
- `InProcess`: the Tune trial's own process (`train.num_workers: 1`, the CPU default and the one-GPU case). No
  TorchTrainer, no worker group: reports go straight to `ray.tune.report`, checkpoints are Tune's, and with
  `reuse_actors` the process, its process group and its cached backbone (pipeline.train.warm) serve the next trial.

A session exposes rank, world, device, the checkpoint the trial restarts from, and report(metrics, directory).
"""

from __future__ import annotations

from pathlib import Path

import torch


class TrainWorker:
    """Inside a Ray Train worker: rank/world/device/checkpoints from Ray Train."""

    records_placement = True
    """Rank 0 records the worker group's placement group, which Tune's callback releases (pipeline.train.placement)."""

    def __init__(self) -> None:
        import ray.train
        import ray.train.torch

        ctx = ray.train.get_context()
        self.rank, self.world = ctx.get_world_rank(), ctx.get_world_size()
        self.device = ray.train.torch.get_device()

    def checkpoint(self) -> Path | None:
        """Local directory of the checkpoint Ray Train restarted this worker group from; None on a fresh start."""
        import ray.train

        ck = ray.train.get_checkpoint()
        return None if ck is None else Path(ck.to_directory())

    def report(self, metrics: dict, directory: str | None = None) -> None:
        """One report (every rank calls it; Train merges the ranks' checkpoint directories into one)."""
        import ray.train

        ray.train.report(metrics, checkpoint=None if directory is None else
                         ray.train.Checkpoint.from_directory(directory))


class InProcess:
    """The Tune trial's own process as the only worker (rank 0 of 1), in a gloo process group kept for the process's
    lifetime (pipeline.train.warm.process_world)."""

    records_placement = False
    """The process runs in Tune's own placement group for the trial: Tune owns it, nothing to release."""

    def __init__(self, use_gpu: bool) -> None:
        from pipeline.train.warm import process_world

        process_world()
        self.rank, self.world = 0, 1
        self.device = torch.device("cuda", torch.cuda.current_device()) if use_gpu and torch.cuda.is_available() \
            else torch.device("cpu")

    def checkpoint(self) -> Path | None:
        """Local directory of the checkpoint Tune restored this trial from (retry after a crash, `--resume`)."""
        from ray import tune

        ck = tune.get_checkpoint()
        return None if ck is None else Path(ck.to_directory())

    def report(self, metrics: dict, directory: str | None = None) -> None:
        """Straight to Tune: ASHA sees it at once; Tune persists the checkpoint before returning."""
        from ray import tune

        tune.report(metrics, checkpoint=None if directory is None else tune.Checkpoint.from_directory(directory))
