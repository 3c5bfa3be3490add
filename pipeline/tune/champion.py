"""Register a search's best prompt. Two ways in, one rule:

- right after `run_search` (the summary from Tune's results), and
- later, from MLflow alone (`promptfarm register CONFIG --search-id ID`, `python -m jobs.register`): a search run
  with `tracking.register=false`, or on a cluster whose Tune storage is gone; the trial runs carry everything.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.config import ExperimentConfig
from pipeline.records import TASK_DIGEST_TAG, Registration, best_of, better


@dataclass(frozen=True)
class BestTrial:
    """A search's best trial as registration needs it."""

    search_id: str
    """The search (Tune experiment name, MLflow search_id tag)."""
    metric: str
    """Reported metric the search optimised, e.g. 'val_accuracy'."""
    mode: str
    """'max' or 'min'."""
    value: float
    """The trial's best value of `metric`."""
    run_id: str
    """MLflow run of the trial (its `prompt` artifact is the prompt at that value)."""
    trials: int
    """Trials the search ran."""


def register_best(client, cfg: ExperimentConfig, best: BestTrial) -> Registration:
    """Register `best`'s prompt under the config's model name, if it beats the champion. The task and backbone are
    the ones the prompt records; a config that names others (an SST-2 search filed under a CoLA config) is
    refused."""
    from pipeline.tracking.registry import register_prompt, registered_name

    search_id, metric, value, run_id = best.search_id, best.metric, best.value, best.run_id

    run = client.get_run(run_id)
    task, backbone = _recorded(client, run_id)
    _check_same(cfg, search_id, task, backbone)
    name = registered_name(cfg)
    method = run.data.params.get("method", cfg.method_name)
    tags = {"method": method, "search_id": search_id,
            "trainable_params": str(int(run.data.metrics.get("trainable_params", 0))),
            "backbone": backbone["name_or_path"], "backbone_revision": str(backbone.get("revision")),
            "task": task.name,
            TASK_DIGEST_TAG: task.digest()}  # the definition the prompt was trained with, its label set resolved
    sampled = {k: v for k, v in run.data.params.items() if k.startswith("method.") and k != "method.name"}
    desc = (f"Best of {best.trials} trials of ASHA search {search_id} ({method}, {metric}={value:.4f}, "
            f"method params {sampled})")
    version, champion = register_prompt(client, name, run_id, metric, value, best.mode, tags, desc)
    return Registration(name, version, champion, value)


def _recorded(client, run_id: str):
    """(task, backbone record) from the prompt_config.json of trial run `run_id`'s logged prompt."""
    import json
    import tempfile
    from pathlib import Path

    from pipeline.artifact import CONFIG_FILE, recorded_task
    from pipeline.tracking.runs import quiet_mlflow

    with tempfile.TemporaryDirectory() as tmp, quiet_mlflow():
        meta = json.loads(Path(client.download_artifacts(run_id, f"prompt/{CONFIG_FILE}", tmp)).read_text())
    return recorded_task(meta), meta["backbone"]


def _check_same(cfg: ExperimentConfig, search_id: str, task, backbone: dict) -> None:
    """The config names the task and backbone the search trained (paths compared by their last component, as the
    registered name is)."""
    from pathlib import PurePath

    mine = (cfg.data.task.name, PurePath(cfg.backbone.name_or_path).name, cfg.backbone.revision)
    theirs = (task.name, PurePath(backbone["name_or_path"]).name, backbone.get("revision"))
    if mine != theirs:
        raise ValueError(f"search {search_id!r} trained task {theirs[0]!r} on {backbone['name_or_path']!r} (revision "
                         f"{theirs[2]}), but the config names task {mine[0]!r} on {cfg.backbone.name_or_path!r} "
                         f"(revision {mine[2]}); expected the config the search ran with")


def best_trial_run(client, exp_id: str, search_id: str, metric: str, mode: str) -> BestTrial:
    """The search's trial run with the best reported `metric` and a logged prompt, from MLflow alone.

    Every eval is in the run's metric history; the run's `prompt` artifact is the prompt at its best eval.
    """
    from pipeline.records import ROLE_TAG, SEARCH_TAG
    from pipeline.tracking.runs import filter_literal

    try:
        sid = filter_literal(search_id)
    except ValueError as e:  # the CLI reports a LookupError as one line
        raise LookupError(f"search id {e}") from None
    runs = client.search_runs([exp_id], filter_string=f"tags.{SEARCH_TAG} = {sid} and "
                                                      f"tags.{ROLE_TAG} = 'trial'", max_results=10000)
    if not runs:
        raise LookupError(f"search {search_id!r} has no trial runs in MLflow experiment {exp_id}; "
                          "expected the id printed by `promptfarm search`")
    best: tuple[str, float] | None = None
    for run in runs:
        values = [m.value for m in client.get_metric_history(run.info.run_id, metric)]
        if not values or not any(a.path == "prompt" for a in client.list_artifacts(run.info.run_id)):
            continue
        v = best_of(values, mode)
        if better(v, best[1] if best else None, mode):
            best = (run.info.run_id, v)
    if best is None:
        raise LookupError(f"search {search_id!r}: no trial reported {metric} with a saved prompt")
    return BestTrial(search_id, metric, mode, best[1], best[0], len(runs))


def register_search(cfg: ExperimentConfig, search_id: str) -> Registration:
    """Register the best prompt of a finished search from its MLflow runs, if it beats the champion."""
    from pipeline.records import search_metric
    from pipeline.tracking.runs import experiment_id, mlflow_client, resolve_tracking_uri

    client = mlflow_client(resolve_tracking_uri(cfg.tracking.tracking_uri))
    metric, mode = search_metric(cfg)
    best = best_trial_run(client, experiment_id(client, cfg), search_id, metric, mode)
    return register_best(client, cfg, best)
