"""The per-trial fn Tune runs for a sampled configuration: the trial's loop itself, in this process, when the trial
has one worker (`train.num_workers: 1`); else a TorchTrainer over the trial's worker group.

In-process trials run in Tune's reused trial actors (`reuse_actors`): the next trial finds the process, its
process group and its backbone warm (pipeline.train.warm). Multi-worker trials keep Ray Train's worker group.
"""

from __future__ import annotations

import hashlib

from pipeline.config import ExperimentConfig
from pipeline.records import SearchRef
from pipeline.tune.cluster import trial_in_process
from pipeline.tune.space import trial_config


def flat_params(cfg: ExperimentConfig) -> dict[str, str]:
    """The experiment as flat dotted MLflow params (values stringified, MLflow's 6000-char cap respected)."""
    out: dict[str, str] = {}

    def walk(prefix: str, node) -> None:
        for k, v in node.items():
            if isinstance(v, dict) and v:
                walk(f"{prefix}{k}.", v)
            else:
                out[prefix + k] = str(v)[:6000]

    walk("", cfg.to_dict())
    out["method"] = cfg.method_name
    return out


def make_driver(base: dict, search: SearchRef):
    """A picklable closure: sampled params (dotted keys) -> one trial of `search`, in this process or in a worker
    group (trial_in_process)."""

    def driver(params: dict) -> None:
        from mlflow.entities import Param
        from ray import tune

        from pipeline.records import ROLE_TAG, SEARCH_TAG, TRIAL_TAG
        from pipeline.tracking.runs import get_or_create_run, mlflow_client
        from pipeline.train.session import LoopContext

        exp = ExperimentConfig.from_dict(trial_config(base, params))
        trial_id = tune.get_context().get_trial_id()
        client = mlflow_client(search.uri)
        tags = {SEARCH_TAG: search.search_id, TRIAL_TAG: trial_id, "mlflow.parentRunId": search.parent,
                ROLE_TAG: "trial"}
        run_id = get_or_create_run(client, search.exp_id, f"{search.search_id}-{trial_id}", tags)
        if not client.get_run(run_id).data.params:  # params are immutable: log once, also across restores
            client.log_batch(run_id, params=[Param(k, v) for k, v in flat_params(exp).items()])
        ctx = LoopContext(search.metric, search.mode, search.uri, run_id, f"{search.search_id}/{trial_id}")
        if trial_in_process(exp):
            from pipeline.train.loop import run_trial
            from pipeline.train.session import InProcess

            run_trial(exp, ctx, InProcess(exp.train.use_gpu))
            return
        from ray.tune.integration.ray_train import TuneReportCallback

        make_trainer(exp, ctx, trainer_name(search.search_id, trial_id), [TuneReportCallback()]).fit()

    # Tune registers a trainable under its name, per Ray job: two searches side by side in one job (a suite's tasks)
    # with one name ran each other's closure, so one task's trials trained and logged as the other's. One name per
    # search, the same again for `--resume`; trial directories read `driver_<8 hex>_<trial id>_...`.
    driver.__name__ = driver.__qualname__ = f"driver_{hashlib.sha256(search.search_id.encode()).hexdigest()[:8]}"
    return driver


def trainer_name(search_id: str, trial_id: str) -> str:
    """The Ray Train run name of a worker-group trial: the same on every restore, so its trainer resumes from its
    own checkpoints."""
    return f"{search_id}-{trial_id}"


def make_trainer(exp: ExperimentConfig, ctx, name: str, callbacks: list):
    """The TorchTrainer of one trial (`ctx`: its LoopContext); a trainer with the same `name` and storage resumes
    from its checkpoints. The validated experiment and its context cross into the workers as they are (Ray pickles
    Train's loop config), not as dicts to validate again."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from pipeline.train.loop import train_worker

    t = exp.train
    workers = {"CPU": t.cpus_per_worker, **({"GPU": 1} if t.use_gpu else {})}
    return TorchTrainer(
        train_worker, train_loop_config={"experiment": exp, "context": ctx},
        scaling_config=ScalingConfig(num_workers=t.num_workers, use_gpu=t.use_gpu, resources_per_worker=workers),
        run_config=RunConfig(
            name=name, storage_path=exp.storage_path, callbacks=callbacks,
            failure_config=FailureConfig(max_failures=t.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=2, checkpoint_score_attribute=ctx.metric,
                                               checkpoint_score_order=ctx.mode)))
