"""The Ray side of a search or suite in one module: start (or join) Ray, make paths absolute for processes that run
elsewhere, how many trials fit at once, and whether one trial fits at all."""

from __future__ import annotations

import os
from pathlib import Path

from pipeline.config import ExperimentConfig, absolute_path

DRIVER_CPU = 0.01
"""CPUs reserved by a multi-worker trial's fn, which only waits on its TorchTrainer."""


def trial_in_process(exp: ExperimentConfig) -> bool:
    """Whether a trial of `exp` runs its loop in the Tune trial's own process (one worker, `train.in_process`), not
    a worker group of its own TorchTrainer."""
    return exp.train.num_workers == 1 and exp.train.in_process


def trial_resources(exp: ExperimentConfig) -> dict[str, float]:
    """What Tune reserves for the trial fn: a worker's CPUs (and GPU) when it trains itself; a sliver when it only
    waits on its TorchTrainer, whose workers reserve their own."""
    if trial_in_process(exp):
        return {"CPU": exp.train.cpus_per_worker, **({"GPU": 1} if exp.train.use_gpu else {})}
    return {"CPU": DRIVER_CPU}


def resolve_paths(cfg: ExperimentConfig) -> ExperimentConfig:
    """Make local paths absolute: trial processes run in other working directories (and on other nodes)."""
    b = cfg.backbone
    if b.init_tiny or b.name_or_path.startswith((".", "/", "~")) or Path(b.name_or_path).exists():
        b.name_or_path = absolute_path(b.name_or_path)
    cfg.data.train_file = absolute_path(cfg.data.train_file)
    cfg.data.validation_file = absolute_path(cfg.data.validation_file)
    if "://" not in cfg.storage_path:
        cfg.storage_path = absolute_path(cfg.storage_path)
    return cfg


def ensure_ray(cfg: ExperimentConfig) -> bool:
    """Start local Ray for `cfg` unless this process is already connected; True when it started it."""
    import ray

    if ray.is_initialized():
        return False
    env = {"DS_ACCELERATOR": "cpu"} if not cfg.train.use_gpu else {}
    # Workers' stdout reaches the driver (the in-trial progress lines); library chatter is kept to errors.
    # Train V2's print patch tees every print to stdout and to its logger: each line reached the driver twice.
    env.update(TRANSFORMERS_VERBOSITY="error", TQDM_DISABLE="1", HF_HUB_DISABLE_PROGRESS_BARS="1",
               RAY_TRAIN_ENABLE_PRINT_PATCH="0")
    ray.init(runtime_env={"env_vars": env}, log_to_driver=os.environ.get("PROMPTFARM_WORKER_LOGS", "1") != "0",
             include_dashboard=wants_dashboard(cfg))
    return True


def wants_dashboard(cfg: ExperimentConfig) -> bool:
    """Whether the embedded local Ray starts its dashboard: `PROMPTFARM_RAY_DASHBOARD=1`/`0` decides when set; else
    only when `cfg`'s trials run Ray Train worker groups.

    The dashboard's dozen processes cost about a second per start and a core's share on a small machine, and this
    embedded cluster takes no job submissions, so one-worker (in-process) trials go without it. A worker group's
    Train controller starts a detached PlacementGroupCleaner that asks the dashboard's State API every second whether
    the controller lives; without the dashboard, a controller that Tune ends (ASHA stopping the trial) leaves that
    actor running for good, logging a warning every second. (The trial's CPUs come back either way: promptfarm
    releases an ended trial's placement group itself, pipeline.train.placement.)"""
    asked = os.environ.get("PROMPTFARM_RAY_DASHBOARD", "")
    return asked == "1" if asked in ("0", "1") else not trial_in_process(cfg)


def check_fits_cluster(cfg: ExperimentConfig) -> None:
    """Fail fast when one trial cannot fit a fixed-size cluster (it would wait for workers forever)."""
    import ray

    from pipeline.preflight import check_fits

    check_fits(cfg.train, ray.cluster_resources(), DRIVER_CPU, "this cluster")


def concurrency(cfg: ExperimentConfig) -> int:
    """Trials that fit the cluster at once: GPUs (or CPUs) divided by what one trial's workers reserve."""
    import ray

    res = ray.cluster_resources()
    if cfg.train.use_gpu:
        return max(1, int(res.get("GPU", 0) // cfg.train.num_workers))
    one = cfg.train.cpus_per_worker * cfg.train.num_workers + trial_resources(cfg)["CPU"]  # workers + trial fn
    one -= cfg.train.cpus_per_worker if trial_in_process(cfg) else 0  # in-process: the trial fn is the worker
    return max(1, int(res.get("CPU", 1) // one))
