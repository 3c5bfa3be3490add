"""Where a trial's loop runs, behind one small interface, so one loop (pipeline.train.loop.run_trial) serves both:

- `TrainWorker`: a Ray Train worker of a TorchTrainer (multi-worker trials: ZeRO across GPUs). Rank and world come
  from Train; reports go through `ray.train.report` and reach Tune via TuneReportCallback.
- `InProcess`: the Tune trial's own process (`train.num_workers: 1`, the CPU default and the one-GPU case). No
  TorchTrainer, no worker group: reports go straight to `ray.tune.report`, checkpoints are Tune's, and with
  `reuse_actors` the process, its process group and its cached backbone (pipeline.train.warm) serve the next trial.

A session exposes rank, world, device, the checkpoint the trial restarts from, and report(metrics, directory);
`LoopContext` is what the trial's driver hands the loop beside the experiment.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch


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
    """'<search id>/<trial id>': where rank 0 records its placement group for release (pipeline.train.placement)."""


class Session(Protocol):
    """Where a trial's loop runs: `TrainWorker` or `InProcess`, which the loop cannot tell apart."""

    rank: int
    """This process's rank in the trial (0 in process)."""
    world: int
    """Processes training the trial."""
    device: torch.device
    """Where this rank computes."""
    records_placement: bool
    """Whether rank 0 records a placement group for the driver's callback to release."""

    def checkpoint(self) -> Path | None:
        """The checkpoint directory the trial restarts from (None: a fresh start)."""

    def report(self, metrics: dict, directory: str | None = None) -> None:
        """Hand `metrics` (and the checkpoint in `directory`) to Tune."""


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
        """Local directory of the newest checkpoint this trial persisted, in any of its directories; None on a fresh
        start.

        Not only the one Tune restored (`tune.get_checkpoint()`): Tune's experiment state is a periodic snapshot, so
        a search driver killed between a trial's report and the next snapshot restores the trial from an older
        checkpoint, or none, and in a new trial directory (a new timestamp in its name) when the snapshot predates
        the trial's start. Every directory of this trial id under the experiment holds what it persisted (a
        TorchTrainer run resumes from its own storage the same way)."""
        from ray import tune
        from ray.train import Checkpoint
        from ray.train._internal.session import get_storage

        storage = get_storage()
        fs, trial_id = storage.storage_filesystem, tune.get_context().get_trial_id()
        # trial_dirs includes this attempt's own directory (storage.trial_fs_path), whose name holds the trial id too
        newest = newest_checkpoint(fs, trial_dirs(fs, storage.experiment_fs_path, trial_id))
        ck = tune.get_checkpoint() if newest is None else Checkpoint(newest, filesystem=fs)
        return None if ck is None else Path(ck.to_directory())

    def report(self, metrics: dict, directory: str | None = None) -> None:
        """Straight to Tune: ASHA sees it at once; Tune persists the checkpoint before returning."""
        from ray import tune

        tune.report(metrics, checkpoint=None if directory is None else tune.Checkpoint.from_directory(directory))


def trial_dirs(fs, experiment_path: str, trial_id: str) -> list[str]:
    """Directories of trial `trial_id` under `experiment_path` on pyarrow filesystem `fs`: Tune names them
    `<trainable>_<trial id>_<index>_<params>_<timestamp>`, and a trial id (`e2b9d_00002`) is unique in an experiment."""
    from pyarrow import fs as pafs

    try:
        found = fs.get_file_info(pafs.FileSelector(experiment_path, allow_not_found=True))
    except OSError:
        return []
    return [i.path for i in found if i.type == pafs.FileType.Directory and f"_{trial_id}_" in i.base_name]


def newest_checkpoint(fs, trial_paths: list[str]) -> str | None:
    """Path (on pyarrow filesystem `fs`) of the `checkpoint_*` directory under `trial_paths` whose prompt records the
    highest step, the later directory then index on a tie; None when there is none. A directory whose
    prompt_config.json is missing or unreadable (a persist cut off by the kill) is skipped."""
    import json

    from pyarrow import fs as pafs

    from pipeline.artifact import CONFIG_FILE

    best: tuple[int, str] | None = None  # (step, path): the path orders ties (timestamped trial dirs, then index)
    for trial_path in trial_paths:
        try:
            found = fs.get_file_info(pafs.FileSelector(trial_path, allow_not_found=True))
        except OSError:
            continue
        for info in found:
            if info.type != pafs.FileType.Directory or not info.base_name.startswith("checkpoint_"):
                continue
            try:
                with fs.open_input_stream(f"{info.path}/{CONFIG_FILE}") as f:
                    step = json.loads(f.read(1 << 20))["step"]
            except (OSError, ValueError, KeyError, TypeError):
                continue
            if isinstance(step, int) and (best is None or (step, info.path) > best):
                best = (step, info.path)
    return None if best is None else best[1]


def use_reserved_cpus(cpus: float) -> int:
    """Set torch's intra-op threads to the `cpus` this Ray worker reserved, rounded up; returns the count.

    Ray starts a worker with OMP_NUM_THREADS=1 unless told otherwise, whatever it reserved; a CPU trial or
    scoring task should use the cores it holds (1.99 beside a driver's 0.01 on a 2-core machine: 2 threads)."""
    import math

    import torch

    threads = max(1, math.ceil(cpus))
    torch.set_num_threads(threads)
    return threads
