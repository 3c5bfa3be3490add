"""MLflow runs of a search: one parent run per search, one child run per trial, found again by tags on restore."""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Iterator
from pathlib import Path

from pipeline.config import ExperimentConfig

DEFAULT_URI = "sqlite:///mlruns.db"


@contextlib.contextmanager
def quiet_mlflow() -> Iterator[None]:
    """MLflow inside the block without its artifact progress bars, nor the warning that logging the pyfunc (whose
    predict takes a DataFrame by design: no schema to validate) infers no signature: a run prints promptfarm's own
    lines only."""
    import logging

    key, old = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", os.environ.get("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR")
    pyfunc_log = logging.getLogger("mlflow.pyfunc")
    level = pyfunc_log.level
    os.environ[key] = "false"
    pyfunc_log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        pyfunc_log.setLevel(level)
        if old is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = old


def resolve_tracking_uri(uri: str | None) -> str:
    """Config value, else $MLFLOW_TRACKING_URI, else ./mlruns.db; relative sqlite paths become absolute
    (trial processes run in other working directories)."""
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        uri = "sqlite:///" + str(Path(uri[len("sqlite:///"):]).resolve())
    return uri


def mlflow_client(uri: str):
    """A client whose tracking AND registry stores are `uri` (a bare MlflowClient(uri) follows the process-global
    registry URI, which another search or `mlflow.set_registry_uri` may have pointed elsewhere)."""
    from mlflow import MlflowClient

    _quiet_store_logs()
    return MlflowClient(uri, registry_uri=uri)


@functools.cache
def _quiet_store_logs() -> None:
    """Once per process: a new sqlite store logs "Creating initial MLflow database tables..." at INFO (a first run
    prints ours only), and a failed write at ERROR with its traceback before raising it (the caller reports the
    raised error once)."""
    import logging

    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)


def experiment_id(client, cfg: ExperimentConfig) -> str:
    """The configured experiment's id, creating it (with a local artifact root next to sqlite) if needed."""
    exp = client.get_experiment_by_name(cfg.tracking.experiment)
    if exp is not None:
        return exp.experiment_id
    location = cfg.tracking.artifact_location
    uri = client._tracking_client.tracking_uri
    if location is None and uri.startswith("sqlite:"):
        location = (Path(uri[len("sqlite:///"):]).parent / "mlartifacts").resolve().as_uri()
    try:
        return client.create_experiment(cfg.tracking.experiment, artifact_location=location)
    except Exception:  # created concurrently by another search
        return client.get_experiment_by_name(cfg.tracking.experiment).experiment_id


def filter_literal(value: str) -> str:
    """`value` quoted for an MLflow filter string (`name = ...`, `tags.k = ...`).

    MLflow's parser strips the quotes but never unescapes (`'it''s'` matches the literal `it''s`), so a value is
    wrapped in the quote character it does not contain; one holding both cannot be expressed and is refused.
    """
    if "'" not in value:
        return f"'{value}'"
    if '"' not in value:
        return f'"{value}"'
    raise ValueError(f"{value!r} holds both ' and \"; an MLflow filter string cannot match it: expected a name "
                     "without one of the two quote characters")


def find_run(client, exp_id: str, tags: dict[str, str]) -> str | None:
    """Id of the newest run carrying all `tags`, if any."""
    query = " and ".join(f"tags.{k} = {filter_literal(v)}" for k, v in tags.items())
    runs = client.search_runs([exp_id], filter_string=query, max_results=1, order_by=["attributes.start_time DESC"])
    return runs[0].info.run_id if runs else None


def get_or_create_run(client, exp_id: str, name: str, tags: dict[str, str]) -> str:
    """Reuse the run with these identity tags (restored search/trial) or start a new one."""
    run_id = find_run(client, exp_id, tags)
    if run_id is None:
        run_id = client.create_run(exp_id, run_name=name, tags=tags).info.run_id
    return run_id
