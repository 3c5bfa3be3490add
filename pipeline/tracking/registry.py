"""Model Registry: register a search's best prompt, move the `champion` alias only on improvement, pull."""

from __future__ import annotations

import contextlib
from pathlib import Path

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from pipeline.config import ExperimentConfig
from pipeline.records import better
from pipeline.tracking.runs import mlflow_client

CHAMPION = "champion"


def model_name(task: str, backbone: str) -> str:
    """Registered-model name for a (task, backbone) pair, e.g. 'sst2-llama-2-7b-hf'."""
    base = Path(backbone.rstrip("/")).name.lower()
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in f"{task}-{base}")


def registered_name(cfg: ExperimentConfig) -> str:
    """The config's registered model: tracking.model_name, else '<task>-<backbone basename>'."""
    return cfg.tracking.model_name or model_name(cfg.data.task, cfg.backbone.name_or_path)


def _champion(client: MlflowClient, name: str):
    with contextlib.suppress(MlflowException):  # no champion yet
        return client.get_model_version_by_alias(name, CHAMPION)
    return None


def _best_version(client: MlflowClient, name: str, metric: str, mode: str):
    """The version with the best recorded value of `metric` (ties: the older version keeps the title)."""
    best = None
    for mv in client.search_model_versions(f"name = '{name}'"):
        if mv.tags.get("metric") != metric or "metric_value" not in mv.tags:
            continue
        value = float(mv.tags["metric_value"])
        if best is None or better(value, best[0], mode) or (value == best[0] and int(mv.version) < int(best[1])):
            best = (value, mv.version)
    return None if best is None else best[1]


def log_prompt_model(client: MlflowClient, run_id: str):
    """Log the run's `prompt` artifact as a pyfunc model (model from code, no pickle) in that run; its ModelInfo.

    The run keeps its status (a pruned trial stays KILLED) although logging reopens it.
    """
    import tempfile

    import mlflow

    from pipeline import __version__

    uri = client._tracking_client.tracking_uri  # the fluent API below follows the global URIs
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    status = client.get_run(run_id).info.status
    with tempfile.TemporaryDirectory() as tmp:
        prompt_dir = client.download_artifacts(run_id, "prompt", tmp)
        mlflow.start_run(run_id=run_id, nested=mlflow.active_run() is not None)
        try:
            return mlflow.pyfunc.log_model(
                name="prompt_model", python_model=str(Path(__file__).with_name("pyfunc_model.py")),
                artifacts={"prompt": prompt_dir},
                pip_requirements=[f"promptfarm=={__version__}"])  # explicit: no requirement inference by loading
        finally:
            mlflow.end_run(status=status if status in ("FINISHED", "FAILED", "KILLED") else "FINISHED")


def register_prompt(client: MlflowClient, name: str, run_id: str, metric: str, value: float, mode: str,
                    tags: dict[str, str], description: str) -> tuple[str | None, bool]:
    """Register run `run_id`'s prompt (as a pyfunc model) as a version of `name` if it beats the champion; move
    `champion` to the best version.

    - Idempotent per search: a version already tagged with this `search_id` is returned, not duplicated
      (a resumed search registers once).
    - A result that does not beat the current champion on the same metric is not registered.
    - Concurrent searches: each, after creating its version, points `champion` at the best version on the metric
      and re-checks until a read after its own write agrees, so the last writer leaves the better one in place.
    Returns (version or None, whether that version is the champion).
    """
    search_id = tags.get("search_id")
    for mv in client.search_model_versions(f"name = '{name}'") if search_id else []:
        if mv.tags.get("search_id") == search_id:
            champ = _champion(client, name)
            return str(mv.version), champ is not None and str(champ.version) == str(mv.version)
    with contextlib.suppress(MlflowException):  # already exists (possibly created by a concurrent search)
        client.create_registered_model(name)
    champ = _champion(client, name)
    if champ is not None and champ.tags.get("metric") == metric and \
            not better(value, float(champ.tags["metric_value"]), mode):
        return None, False
    model_info = log_prompt_model(client, run_id)
    mv = client.create_model_version(name, source=model_info.model_uri, run_id=run_id, model_id=model_info.model_id,
                                     description=description,
                                     tags={**tags, "metric": metric, "metric_value": repr(value), "mode": mode})
    for _ in range(10):  # converges in one or two rounds; bounded in case of a pathological writer
        best = _best_version(client, name, metric, mode)
        champ = _champion(client, name)
        if champ is not None and str(champ.version) == str(best):
            break
        client.set_registered_model_alias(name, CHAMPION, best)
    return str(mv.version), str(_champion(client, name).version) == str(mv.version)


def evaluate_registered(name: str, alias: str, tracking_uri: str, split: str = "validation",
                        path: str | None = None, limit: int | None = None) -> dict[str, float]:
    """Re-evaluate NAME@alias on a split; log the result as a run (tags: model, version, split) and tag the version."""
    import tempfile

    from pipeline.predict import Predictor

    client = mlflow_client(tracking_uri)
    mv = client.get_model_version_by_alias(name, alias)
    with tempfile.TemporaryDirectory() as tmp:
        metrics = Predictor.load(pull(name, tmp, alias, tracking_uri)).evaluate(split, path, limit)
    exp = client.get_experiment_by_name("promptfarm-evaluations")
    exp_id = exp.experiment_id if exp else client.create_experiment("promptfarm-evaluations")
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
    from pipeline.predict import Predictor

    metrics = Predictor.frozen(cfg.backbone, cfg.data.task, cfg.data.max_length,
                               cfg.data.decoder_separator).evaluate(split, path, limit)
    client = mlflow_client(tracking_uri)
    exp = client.get_experiment_by_name("promptfarm-evaluations")
    exp_id = exp.experiment_id if exp else client.create_experiment("promptfarm-evaluations")
    name = registered_name(cfg)
    run = client.create_run(exp_id, run_name=f"{name}-frozen-{split}", tags={
        "model_name": name, "baseline": "frozen", "split": split, "data": path or "hub",
        "backbone": cfg.backbone.gguf or cfg.backbone.name_or_path})
    for key, value in metrics.items():
        client.log_metric(run.info.run_id, key, value)
    client.log_param(run.info.run_id, "examples", limit or "all")
    client.set_terminated(run.info.run_id)
    return metrics


def pull(name_or_uri: str, out: str | Path, alias: str = CHAMPION, tracking_uri: str | None = None) -> Path:
    """Download the prompt of `NAME` (at `alias`) or of an explicit models:/ / runs:/ URI: its two files land in `out`.

    A registered version is a pyfunc model whose prompt sits under artifacts/prompt/; a runs:/ URI may point at
    the plain prompt directory. Either way `out` ends up holding prompt_config.json + prompt.safetensors, checked.
    """
    import shutil
    import tempfile

    import mlflow

    from pipeline.methods.artifact import CONFIG_FILE, TENSORS_FILE, read_prompt_meta

    if ":/" in name_or_uri:
        uri = name_or_uri
    else:  # resolve NAME@alias with an explicit client: the fluent models:/ path caches the registry it first saw
        client = mlflow_client(tracking_uri)
        mv = client.get_model_version_by_alias(name_or_uri, alias)
        # a tracking server's REST reply leaves model_id empty; the source 'models:/m-<id>' still names the model
        model_id = mv.model_id or (mv.source.removeprefix("models:/") if mv.source.startswith("models:/m-") else None)
        uri = client.get_logged_model(model_id).artifact_location if model_id else mv.source
    out = Path(out)
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=tmp, tracking_uri=tracking_uri))
        src = local if (local / CONFIG_FILE).is_file() else local / "artifacts" / "prompt"
        read_prompt_meta(src)  # refuse a corrupt download before it replaces anything in `out`
        out.mkdir(parents=True, exist_ok=True)
        for f in (TENSORS_FILE, CONFIG_FILE):
            shutil.copyfile(src / f, out / f)
    read_prompt_meta(out)
    return out
