"""ASHA search: a Tuner over a per-trial driver fn (pipeline.tune.driver); each trial reports every eval to ASHA.

A trial of one worker (`train.in_process`, the CPU and one-GPU default) trains in the Tune trial's own process, which
`reuse_actors` keeps warm for the next trial; a multi-worker trial's driver builds a TorchTrainer (DeepSpeed ZeRO
across its workers) with `TuneReportCallback`, so each `ray.train.report` reaches ASHA while the trial runs and it
can prune mid-trial. MLflow: the search creates a parent run; each trial's driver creates (or on restore finds) its
child run and hands the id to rank 0, which logs metrics and the best-so-far prompt; a Tune callback closes each
child run with its outcome (completed, pruned, failed + reason). After the search the best prompt is registered.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass

from pipeline.config import ExperimentConfig
from pipeline.records import (
    ROLE_TAG,
    SEARCH_TAG,
    STATE_TAG,
    TRIAL_TAG,
    SearchRef,
    SearchSummary,
    TrialSummary,
    best_of,
    best_trial,
    better,
    ended_as,
    search_metric,
)
from pipeline.tune.cluster import (
    DRIVER_CPU,
    check_fits_cluster,
    concurrency,
    ensure_ray,
    resolve_paths,
    trial_in_process,
    trial_resources,
)
from pipeline.tune.resume import check_resumable
from pipeline.tune.space import search_space, to_ray


def run_search(cfg: ExperimentConfig, resume: str | None = None, register: bool | None = None,
               search_id: str | None = None, parent_run: str | None = None,
               callbacks: list | None = None) -> SearchSummary:
    """Run (or with `resume`=search id, restore and finish) an ASHA search, then register the best prompt.

    `search_id` names a new search (default '<name>-<timestamp>'); `parent_run` nests its MLflow run under another
    (a suite's) run; `callbacks` are more Tune callbacks (e.g. pipeline.bench.trials.TrialClock).

    Pre-flight first (pipeline.preflight): data, resources, tracking store and backbone are checked before Ray
    starts; a failure raises a one-line PreflightError (a ConfigError)."""
    from pipeline.preflight import check_run

    check_run(cfg, DRIVER_CPU)
    from pipeline.model.backbone import ensure_backbone

    cfg = resolve_paths(cfg)
    if resume is not None:
        check_resumable(cfg.storage_path, resume)
    else:
        search_space(cfg)  # an unknown or invalid key in search.space: one line now, not after Ray starts
    ensure_backbone(cfg.backbone)
    search_id = resume or search_id or f"{cfg.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    run = _open_search_run(cfg, search_id, resume is not None, parent_run)
    if ensure_ray(cfg):
        check_fits_cluster(cfg)
    from pipeline.tune.interrupt import Interrupted, Interruptible
    from pipeline.tune.storage import FaultGuard, StorageFull, StoreUnwritable, mark_store_fault

    tuner = _tuner(cfg, run, resume is not None, callbacks or [])
    faults = FaultGuard(cfg.storage_path, run.ref.uri, search_id)
    try:
        with Interruptible() as stop, faults:
            grid = tuner.fit()
            if not stop.interrupted:
                faults.check(grid.errors)  # trials that could not save or log: a store, not the trial, failed
                summary = summarize(grid, search_id, run.ref.metric, run.ref.mode, cfg.train.max_steps,
                                    cfg.method_name)
    except StorageFull:
        _leave_resumable(run)
        raise
    except StoreUnwritable:  # the store cannot record it: the search's folder does, so --resume retries those trials
        mark_store_fault(cfg.storage_path, search_id)
        raise
    if stop.interrupted:  # saved, not finished: nothing registered, the run stays open for --resume
        _leave_resumable(run)
        raise Interrupted(search_id, stop.signum)
    with faults:  # registration writes to the tracking store too
        return _finish(cfg, run, summary, register)


def _leave_resumable(run: _SearchRun) -> None:
    """An unfinished search's run: tagged interrupted and closed KILLED (`--resume` opens it again)."""
    run.client.set_tag(run.ref.parent, STATE_TAG, "interrupted")
    run.client.set_terminated(run.ref.parent, "KILLED")


@dataclass
class _SearchRun:
    """One search as the search driver holds it: its identity and an MLflow client on its store."""

    ref: SearchRef
    """Identity, tracking and metric of the search."""
    client: object
    """MlflowClient on `ref.uri`."""


def _open_search_run(cfg: ExperimentConfig, search_id: str, resuming: bool, parent_run: str | None) -> _SearchRun:
    """Create (or on resume find) the search's parent MLflow run with its config; print the search id first."""
    from pipeline.tracking.runs import experiment_id, get_or_create_run, mlflow_client, resolve_tracking_uri

    metric, mode = search_metric(cfg)
    uri = resolve_tracking_uri(cfg.tracking.tracking_uri)
    client = mlflow_client(uri)
    exp_id = experiment_id(client, cfg)
    parent = get_or_create_run(client, exp_id, search_id, {SEARCH_TAG: search_id, ROLE_TAG: "search"})
    if parent_run:
        client.set_tag(parent, "mlflow.parentRunId", parent_run)
    if resuming:  # an interrupted search's run was closed KILLED: it runs again
        client.update_run(parent, status="RUNNING")
    client.set_tag(parent, STATE_TAG, "running")
    client.log_text(parent, json.dumps(cfg.to_dict(), indent=2), "config.json")
    print(f"[promptfarm] search id: {search_id} ({'resuming' if resuming else 'new'}; MLflow {uri}, run {parent})",
          flush=True)  # printed first: the id `--resume` needs if this driver dies
    return _SearchRun(SearchRef(search_id, uri, exp_id, parent, metric, mode,
                                -(-cfg.train.max_steps // cfg.train.eval_every)), client)


def _tuner(cfg: ExperimentConfig, run: _SearchRun, resuming: bool, extra: list):
    """The Tuner of a new search (ASHA over the search space), or the restored Tuner of an interrupted one."""
    from ray import tune

    from pipeline.tune.callbacks import MlflowTrialStatus, ProgressLine
    from pipeline.tune.driver import make_driver
    from pipeline.tune.storage import took_store_fault

    driver = make_driver(cfg.to_dict(), run.ref)
    # CheckpointConfig(num_to_keep) forces a state snapshot per checkpoint, by design here; Tune would warn about it
    # every few seconds of a fast search
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    trainable = tune.with_resources(driver, trial_resources(cfg))
    path = f"{cfg.storage_path.rstrip('/')}/{run.ref.search_id}"  # a URI (s3://...) or a mounted path
    if resuming:
        # trials that failed only because the tracking store refused their writes resume from their checkpoints
        retry = took_store_fault(cfg.storage_path, run.ref.search_id)
        return tune.Tuner.restore(path, trainable=trainable, resume_errored=retry, restart_errored=False)
    status_cb = MlflowTrialStatus(run.ref, cfg.train.max_steps)
    return tune.Tuner(
        trainable, param_space=to_ray(search_space(cfg)),
        tune_config=tune.TuneConfig(
            metric=run.ref.metric, mode=run.ref.mode, num_samples=cfg.search.num_samples,
            search_alg=search_algorithm(cfg, cfg.search.max_concurrent_trials or concurrency(cfg)),
            scheduler=scheduler(cfg, run.ref.max_reports),
            # in-process trials: the next trial gets a warm process (pipeline.train.warm); a TorchTrainer's
            # driver is not reused (a second Train run in one reused actor never got its workers)
            reuse_actors=trial_in_process(cfg)),
        run_config=tune.RunConfig(
            name=run.ref.search_id, storage_path=cfg.storage_path,
            # verbose=0: promptfarm's own lines (ProgressLine, the summary) say what Tune's status tables did
            callbacks=[status_cb, ProgressLine(run.ref.metric, run.ref.mode, cfg.train.max_steps), *extra], verbose=0,
            # Retries: Tune's for in-process trials (from the trial's last checkpoint), Ray Train's for worker groups
            failure_config=tune.FailureConfig(max_failures=cfg.train.max_failures if trial_in_process(cfg) else 0),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2, checkpoint_score_attribute=run.ref.metric,
                                                    checkpoint_score_order=run.ref.mode)))


def _finish(cfg: ExperimentConfig, run: _SearchRun, summary: SearchSummary, register: bool | None) -> SearchSummary:
    """Record the best trial and the plots on the search run, register the best prompt, close the run."""
    from pipeline.tracking.plots import log_search_plots
    from pipeline.tracking.runs import find_run

    if summary.best_trial is not None:
        summary.best_run_id = find_run(run.client, run.ref.exp_id, {SEARCH_TAG: run.ref.search_id,
                                                                TRIAL_TAG: summary.best_trial})
        run.client.log_metric(run.ref.parent, f"best_{run.ref.metric}", summary.best_value)
    log_search_plots(run.client, run.ref.parent, summary)
    run.client.set_tag(run.ref.parent, STATE_TAG, "finished")
    if (cfg.tracking.register if register is None else register) and summary.best_run_id:
        from pipeline.tune.champion import BestTrial, register_best

        best = BestTrial(run.ref.search_id, run.ref.metric, run.ref.mode, summary.best_value, summary.best_run_id,
                         len(summary.trials))
        summary.registration = register_best(run.client, cfg, best)
    run.client.set_terminated(run.ref.parent, "FINISHED")
    return summary


def train_one(cfg: ExperimentConfig, resume: str | None = None, register: bool | None = None) -> SearchSummary:
    """One trial of exactly the configured method and values (nothing sampled), tracked and registered as a
    one-trial search: same MLflow runs, checkpoints, fault tolerance, resume and registry rule."""
    return run_search(one_trial(cfg), resume=resume, register=register)


def one_trial(cfg: ExperimentConfig) -> ExperimentConfig:
    """`cfg` as a search of exactly one trial of its method section (mutated in place and returned).

    search.equal_budget is dropped too: it would overwrite the method section's own sizes (PT's num_tokens, the
    decomposed methods' rank), and a train-one of `method.num_tokens=60` must train 60 tokens."""
    cfg.search.num_samples, cfg.search.methods, cfg.search.space, cfg.search.default_space = 1, {}, {}, False
    cfg.search.equal_budget = None
    return cfg


def scheduler(cfg: ExperimentConfig, max_reports: int):
    """ASHA over training iterations (one per eval, `max_reports` in all), or FIFO: every trial to its last step."""
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    if cfg.search.scheduler == "fifo":
        return FIFOScheduler()
    return ASHAScheduler(time_attr="training_iteration", max_t=max_reports,
                         grace_period=min(cfg.search.grace_period, max_reports),
                         reduction_factor=cfg.search.reduction_factor)


def search_algorithm(cfg: ExperimentConfig, max_concurrent: int):
    """Seeded random sampling (default) or Optuna's TPE, each capping concurrency itself (Tune ignores
    max_concurrent_trials once a search algorithm is given)."""
    if cfg.search.algorithm == "optuna":
        from ray.tune.search import ConcurrencyLimiter
        from ray.tune.search.optuna import OptunaSearch

        return ConcurrencyLimiter(OptunaSearch(seed=cfg.search.seed), max_concurrent=max_concurrent)
    from ray.tune.search.basic_variant import BasicVariantGenerator

    return BasicVariantGenerator(random_state=cfg.search.seed, max_concurrent=max_concurrent)


def summarize(grid, search_id: str, metric: str, mode: str, max_steps: int, method: str) -> SearchSummary:
    """Per-trial outcomes (records.ended_as) and the best trial (records.best_trial) at its best report."""
    out = SearchSummary(search_id, metric, mode)
    best_rows: dict[str, dict] = {}
    for res in grid:
        df = res.metrics_dataframe
        rows = [] if df is None or metric not in df else df.dropna(subset=[metric]).to_dict("records")
        trial_id = (res.metrics or {}).get("trial_id") or (rows[-1]["trial_id"] if rows else "?")
        params = {k: v for k, v in (res.config or {}).items()}
        last = rows[-1] if rows else {}
        status = "failed" if res.error else ended_as(int(last.get("step", 0)), max_steps)
        err = str(res.error).strip().splitlines()[-1][:500] if res.error else None
        out.trials.append(TrialSummary(
            trial_id, params, len(rows), best_of([r[metric] for r in rows], mode), status,
            params.get("method.name", method),
            int(last["trainable_params"]) if "trainable_params" in last else None, int(last.get("step", 0)),
            float(last.get("time_total_s", 0.0)), [(int(r.get("step", 0)), float(r[metric])) for r in rows], err))
        for r in rows:  # Tune's own checkpoints (in-process trials) are named relative to the trial's directory
            if isinstance(r.get("checkpoint_dir_name"), str) and getattr(res, "path", None):
                r["_checkpoint"] = f"{res.path.rstrip('/')}/{r['checkpoint_dir_name']}"
        for r in rows:  # the trial's first report at its best value: its checkpoint is the prompt to register
            if trial_id not in best_rows or better(r[metric], best_rows[trial_id][metric], mode):
                best_rows[trial_id] = r
    top = best_trial(out.trials, mode)
    if top is not None:
        row = best_rows[top.trial_id]
        out.best_trial, out.best_value = top.trial_id, float(row[metric])
        out.best_checkpoint = row.get("checkpoint_path") or row.get("_checkpoint")
    return out
