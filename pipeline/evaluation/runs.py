"""Evaluation runs: a registered prompt (NAME@alias) or the frozen backbone scored on a split, each logged as one
run of the MLflow experiment 'promptfarm-evaluations'; a registered version is also tagged with its scores."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pipeline.config import BackboneConfig, ExperimentConfig, load_config
from pipeline.tracking.registry import pull, registered_name
from pipeline.tracking.runs import mlflow_client, resolve_tracking_uri

EXPERIMENT = "promptfarm-evaluations"


@dataclass(frozen=True)
class EvalTarget:
    """What `promptfarm evaluate MODEL` scores, resolved from a NAME[@ALIAS] or a CONFIG file."""

    cfg: ExperimentConfig | None
    """The experiment config when MODEL is a CONFIG file (its backbone and task for --frozen), else None."""
    name: str
    """Registered model name: NAME, or the config's registered name."""
    alias: str
    """Registry alias to score (`NAME@ALIAS`, else `alias`)."""
    file: str | None
    """Local data file: the one given, else a config's validation file for the validation split."""
    tracking_uri: str
    """The tracking store: the one given, else the config's, else $MLFLOW_TRACKING_URI or ./mlruns.db."""


def eval_target(model: str, overrides: list[str] | None, alias: str, split: str, file: str | None,
                tracking_uri: str | None) -> EvalTarget:
    """Resolve MODEL (NAME[@ALIAS] or a *.yaml / *.yml CONFIG); a bad config is a ConfigError."""
    if model.endswith((".yaml", ".yml")):
        cfg = load_config(Path(model), overrides or [])
        return EvalTarget(cfg, registered_name(cfg), alias,
                          file or (cfg.data.validation_file if split == "validation" else None),
                          resolve_tracking_uri(tracking_uri or cfg.tracking.tracking_uri))
    name, _, at = model.partition("@")
    return EvalTarget(None, name, at or alias, file, resolve_tracking_uri(tracking_uri))


def _experiment_id(client) -> str:
    exp = client.get_experiment_by_name(EXPERIMENT)
    return exp.experiment_id if exp else client.create_experiment(EXPERIMENT)


def evaluate_registered(name: str, alias: str, tracking_uri: str, split: str = "validation",
                        path: str | None = None, limit: int | None = None,
                        check_backbone: Callable[[BackboneConfig], None] | None = None) -> dict[str, float]:
    """Re-evaluate NAME@alias on a split; log the result as a run (tags: model, version, split) and tag the version.

    `check_backbone` sees the backbone the pulled prompt records before it loads (the CLI's pre-flight probe: an
    uncached hub id offline is one line at once, not ~25 s of hub retries)."""
    import tempfile

    from pipeline.evaluation.predictor import Predictor

    client = mlflow_client(tracking_uri)
    mv = client.get_model_version_by_alias(name, alias)
    with tempfile.TemporaryDirectory() as tmp:
        local = pull(name, tmp, alias, tracking_uri)
        if check_backbone is not None:
            check_backbone(Predictor.backbone_config(local))
        metrics = Predictor.load(local).evaluate(split, path, limit)
    exp_id = _experiment_id(client)
    run = client.create_run(exp_id, run_name=f"{name}-v{mv.version}-{split}", tags={
        "model_name": name, "model_version": str(mv.version), "alias": alias, "split": split,
        "data": path or "hub"})
    for key, value in metrics.items():
        client.log_metric(run.info.run_id, key, value)
        client.set_model_version_tag(name, str(mv.version), f"eval_{split}_{key.removeprefix('val_')}", repr(value))
    client.set_terminated(run.info.run_id)
    return metrics


def evaluate_frozen(cfg, tracking_uri: str, split: str = "validation", path: str | None = None,
                    limit: int | None = None) -> dict[str, float]:
    """The frozen baseline of `cfg` (its backbone with no prompt, same task template and label words) on a split,
    logged as one run of 'promptfarm-evaluations' tagged baseline=frozen and the config's registered model name."""
    from pipeline.evaluation.predictor import Predictor

    metrics = Predictor.frozen(cfg.backbone, cfg.data).evaluate(split, path, limit)
    client = mlflow_client(tracking_uri)
    exp_id = _experiment_id(client)
    name = registered_name(cfg)
    run = client.create_run(exp_id, run_name=f"{name}-frozen-{split}", tags={
        "model_name": name, "baseline": "frozen", "split": split, "data": path or "hub",
        "backbone": cfg.backbone.gguf or cfg.backbone.name_or_path})
    for key, value in metrics.items():
        client.log_metric(run.info.run_id, key, value)
    client.log_param(run.info.run_id, "examples", limit or "all")
    client.set_terminated(run.info.run_id)
    return metrics
