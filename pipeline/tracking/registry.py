"""Model Registry: register a search's best prompt, move the `champion` alias only on improvement, pull."""

from __future__ import annotations

import contextlib
import logging
import math
from pathlib import Path

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from pipeline.config import ExperimentConfig
from pipeline.records import TASK_DIGEST_TAG, best_of, better
from pipeline.tracking.runs import filter_literal, mlflow_client, quiet_mlflow

CHAMPION = "champion"
log = logging.getLogger("promptfarm")

# The pyfunc loader sits with the predictor it wraps (pipeline.evaluation): MLflow copies the file into each logged
# model and runs it at load, so the registry names it by path and never imports it.
PYFUNC_FILE = Path(__file__).parents[1] / "evaluation" / "pyfunc_model.py"


def model_name(task: str, backbone: str) -> str:
    """Registered-model name for a (task, backbone) pair, e.g. 'sst2-llama-2-7b-hf'."""
    base = Path(backbone.rstrip("/")).name.lower()
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in f"{task}-{base}")


def registered_name(cfg: ExperimentConfig) -> str:
    """The config's registered model: tracking.model_name, else '<task>-<backbone basename>'."""
    return cfg.tracking.model_name or model_name(cfg.data.task.name, cfg.backbone.name_or_path)


def _champion(client: MlflowClient, name: str):
    with contextlib.suppress(MlflowException):  # no champion yet
        return client.get_model_version_by_alias(name, CHAMPION)
    return None


def logged_value(client: MlflowClient, run_id: str, metric: str, mode: str) -> float | None:
    """The best finite value of `metric` that run `run_id` logged (None: no such run or no finite value).

    Champion decisions use this, never a version's `metric_value` tag: tags are free text that anyone with
    registry write access can set, while the trial's metric history is what the project's training loop recorded.
    """
    return best_of(_logged_values(client, run_id, metric), mode)


def _logged_values(client: MlflowClient, run_id: str, metric: str) -> list[float]:
    """Every finite value of `metric` in run `run_id`'s history ([] for a deleted or unreadable run)."""
    try:
        values = [m.value for m in client.get_metric_history(run_id, metric)]
    except MlflowException:  # run deleted or unreadable: nothing recorded to compare
        return []
    return [v for v in values if math.isfinite(v)]


def _version_value(client: MlflowClient, mv, metric: str, mode: str, seen: dict) -> float | None:
    """Validated value of version `mv` on `metric` (None: another metric, or nothing valid recorded), cached in
    `seen` so each version is read and warned about once per registration.

    A version made before its run was resumed and trained further holds the prompt of that earlier best: its tag
    counts when it is one of the values the run logged, otherwise the run's logged best does (with a warning)."""
    if mv.tags.get("metric") != metric:
        return None
    key = str(mv.version)
    if key not in seen:
        history = _logged_values(client, mv.run_id, metric) if mv.run_id else []
        tag = mv.tags.get("metric_value")
        at_registration = next((v for v in history if _matches(tag, v)), None)
        seen[key] = value = at_registration if at_registration is not None else best_of(history, mode)
        if value is None:
            log.warning(f"{mv.name} version {key}: its run {mv.run_id!r} logged no finite {metric}; "
                        "ignored when choosing the champion")
        elif not _matches(tag, value):
            log.warning(f"{mv.name} version {key}: tag metric_value={tag!r} is not its run's logged {metric}="
                        f"{value!r}; the logged value counts")
    return seen[key]


def _matches(tag: str | None, value: float) -> bool:
    try:
        return math.isclose(float(tag), value, rel_tol=1e-9, abs_tol=1e-12)
    except (TypeError, ValueError):
        return False


def _best_version(client: MlflowClient, name: str, metric: str, mode: str, seen: dict):
    """The version with the best validated value of `metric` (ties: the older version keeps the title)."""
    best = None
    for mv in client.search_model_versions(f"name = {filter_literal(name)}"):
        value = _version_value(client, mv, metric, mode, seen)
        if value is None:
            continue
        if best is None or better(value, best[0], mode) or (value == best[0] and int(mv.version) < int(best[1])):
            best = (value, mv.version)
    return None if best is None else best[1]


def log_prompt_model(client: MlflowClient, run_id: str):
    """Log the run's `prompt` artifact as a pyfunc model (model from code: no pickle, but loading it runs the stored
    pyfunc_model.py) in that run; its ModelInfo.

    The run keeps its status (a pruned trial stays KILLED) although logging reopens it.
    """
    import tempfile

    import mlflow

    from pipeline import __version__

    uri = client._tracking_client.tracking_uri  # the fluent API below follows the global URIs
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    status = client.get_run(run_id).info.status
    with tempfile.TemporaryDirectory() as tmp, quiet_mlflow():
        prompt_dir = client.download_artifacts(run_id, "prompt", tmp)
        mlflow.start_run(run_id=run_id, nested=mlflow.active_run() is not None)
        try:
            return mlflow.pyfunc.log_model(
                name="prompt_model", python_model=str(PYFUNC_FILE),
                artifacts={"prompt": prompt_dir},
                pip_requirements=[f"promptfarm=={__version__}"])  # explicit: no requirement inference by loading
        finally:
            mlflow.end_run(status=status if status in ("FINISHED", "FAILED", "KILLED") else "FINISHED")


def register_prompt(client: MlflowClient, name: str, run_id: str, metric: str, value: float, mode: str,
                    tags: dict[str, str], description: str) -> tuple[str | None, bool]:
    """Register run `run_id`'s prompt (as a pyfunc model) as a version of `name` if it beats the champion; move
    `champion` to the best version.

    - Idempotent per search result: a version already holding this `search_id`'s run `run_id` at the same logged
      best is returned, not duplicated (a resumed search registers once); a resumed or extended search whose best
      has moved since (a later step of the same run, or another trial) is compared like any new result.
    - A result that does not beat the current champion on the same metric is not registered.
    - Every value compared is one a run logged (`logged_value`): run `run_id`'s logged best stands for `value`
      (a warning if they differ; refused if it logged none), and a version whose run recorded nothing valid is
      skipped with a warning. Tags only exclude: a version tagged with another `metric` is not compared.
    - Concurrent searches: each, after creating its version, points `champion` at the best version on the metric
      and re-checks until a read after its own write agrees, so the last writer leaves the better one in place.
    Returns (version or None, whether that version is the champion).
    """
    search_id = tags.get("search_id")
    versions = f"name = {filter_literal(name)}"  # refuses, in one line, a name no filter string can express
    logged = logged_value(client, run_id, metric, mode)
    if logged is None:
        raise ValueError(f"run {run_id} logged no finite {metric}; a prompt is registered with a value its run "
                         "recorded")
    for mv in client.search_model_versions(versions) if search_id else []:
        if (mv.tags.get("search_id"), mv.run_id, mv.tags.get("metric_value")) == (search_id, run_id, repr(logged)):
            champ = _champion(client, name)
            return str(mv.version), champ is not None and str(champ.version) == str(mv.version)
    _same_task(client, name, versions, tags)
    if not math.isclose(logged, value, rel_tol=1e-9, abs_tol=1e-12):
        log.warning(f"run {run_id}: {metric}={value!r} was reported but the run logged {logged!r} at best; "
                    "registering the logged value")
    value, seen = logged, {}
    with contextlib.suppress(MlflowException):  # already exists (possibly created by a concurrent search)
        client.create_registered_model(name)
    champ = _champion(client, name)
    champ_value = None if champ is None else _version_value(client, champ, metric, mode, seen)
    if champ_value is not None and not better(value, champ_value, mode):
        return None, False
    model_info = log_prompt_model(client, run_id)
    mv = client.create_model_version(name, source=model_info.model_uri, run_id=run_id, model_id=model_info.model_id,
                                     description=description,
                                     tags={**tags, "metric": metric, "metric_value": repr(value), "mode": mode})
    for _ in range(10):  # converges in one or two rounds; bounded in case of a pathological writer
        best = _best_version(client, name, metric, mode, seen)
        champ = _champion(client, name)
        if best is None or (champ is not None and str(champ.version) == str(best)):
            break
        client.set_registered_model_alias(name, CHAMPION, best)
    champ = _champion(client, name)
    return str(mv.version), champ is not None and str(champ.version) == str(mv.version)


def _same_task(client: MlflowClient, name: str, versions: str, tags: dict[str, str]) -> None:
    """Refuse to register a prompt under `name` when a version there was trained for another definition of the
    task (its `task_digest` tag differs): one name, one task definition."""
    digest = tags.get(TASK_DIGEST_TAG)
    if digest is None:
        return
    for mv in client.search_model_versions(versions):
        other = mv.tags.get(TASK_DIGEST_TAG)
        if other is not None and other != digest:
            raise ValueError(f"registered model {name!r} holds prompts for another definition of task "
                             f"{tags.get('task')!r} (version {mv.version}: task digest {other[:12]}, this search: "
                             f"{digest[:12]}); expected the same definition, or another task name or "
                             "tracking.model_name")


def prompt_digest(prompt_dir: str | Path) -> str:
    """A prompt's pin: hex SHA-256 of its prompt_config.json bytes (`sha256sum DIR/prompt_config.json`).

    That file records the SHA-256 of prompt.safetensors, which every load checks, so one digest pins both files;
    unlike the recorded tensor hash it is kept outside the registry, by whoever pins it.
    """
    from pipeline.artifact import CONFIG_FILE
    from pipeline.digest import file_sha256

    return file_sha256(Path(prompt_dir) / CONFIG_FILE)


def pull(name_or_uri: str, out: str | Path, alias: str = CHAMPION, tracking_uri: str | None = None,
         version: str | None = None, sha256: str | None = None) -> Path:
    """`pull_pinned`, returning only `out`."""
    return pull_pinned(name_or_uri, out, alias, tracking_uri, version, sha256)[0]


def pull_pinned(name_or_uri: str, out: str | Path, alias: str = CHAMPION, tracking_uri: str | None = None,
                version: str | None = None, sha256: str | None = None) -> tuple[Path, str | None, str]:
    """Download the prompt of `NAME` (version `version`, else at `alias`) or of an explicit models:/ / runs:/ URI:
    its two files land in `out`. Returns (out, the version pulled or None for a URI, its `prompt_digest`).

    A registered version is a pyfunc model whose prompt sits under artifacts/prompt/; a runs:/ URI may point at
    the plain prompt directory. Either way the download is checked (and, given `sha256`, must have that digest)
    before anything in `out` is replaced, so a refused pull leaves `out` as it was.
    """
    import tempfile

    from pipeline.artifact import PromptArtifactError, read_prompt_meta

    if version is not None and not str(version).isdigit():
        raise ValueError(f"version {version!r} is not a registry version; expected a number such as 3")
    if sha256 is not None and (len(sha256) != 64 or any(c not in "0123456789abcdefABCDEF" for c in sha256)):
        raise ValueError(f"sha256 {sha256!r} is not a digest; expected 64 hex digits (printed by `promptfarm pull`)")
    if ":/" in name_or_uri:
        if version is not None:
            raise ValueError(f"a version applies to a registered model name, not to the URI {name_or_uri!r}")
        uri, pulled = name_or_uri, None
    else:  # resolve NAME@alias with an explicit client: the fluent models:/ path caches the registry it first saw
        client = mlflow_client(tracking_uri)
        mv = client.get_model_version(name_or_uri, str(version)) if version is not None else \
            client.get_model_version_by_alias(name_or_uri, alias)
        uri, pulled = _version_source(client, mv), str(mv.version)
    out = Path(out)
    with tempfile.TemporaryDirectory() as tmp, quiet_mlflow():
        src = _download_prompt(uri, Path(tmp), tracking_uri)
        read_prompt_meta(src)  # refuse a corrupt download before it replaces anything in `out`
        digest = prompt_digest(src)
        if sha256 is not None and digest != sha256.lower():
            what = name_or_uri if pulled is None else f"{name_or_uri} version {pulled}"
            raise PromptArtifactError(f"{what} has prompt digest {digest}, not the pinned {sha256.lower()}; "
                                      f"nothing written to {str(out)!r}")
        _install(src, out)
    read_prompt_meta(out)
    return out, pulled, digest


def _version_source(client: MlflowClient, mv) -> str:
    """Where version `mv`'s prompt lives: its logged model's artifacts, a models:/ or runs:/ URI, or a path under
    its run's artifact root. Any other source (`file:///etc`, which a sqlite registry accepts) is refused before
    anything is read from it."""
    # a tracking server's REST reply leaves model_id empty; the source 'models:/m-<id>' still names the model
    model_id = mv.model_id or (mv.source.removeprefix("models:/") if mv.source.startswith("models:/m-") else None)
    if model_id:
        return client.get_logged_model(model_id).artifact_location
    source = mv.source or ""
    if source.startswith(("runs:/", "models:/")):
        return source
    root = client.get_run(mv.run_id).info.artifact_uri.rstrip("/") if mv.run_id else None
    if root and source.startswith(root + "/"):
        return source
    raise ValueError(f"{mv.name} version {mv.version} has source {source[:100]!r}, outside this tracking store's "
                     "artifacts; expected a prompt registered by promptfarm (a models:/ or runs:/ source)")


def _download_prompt(uri: str, tmp: Path, tracking_uri: str | None) -> Path:
    """Download only the two prompt files at `uri` (a plain prompt directory, or a pyfunc model holding one under
    artifacts/prompt/) into `tmp`; return the folder that holds them."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from pipeline.artifact import CONFIG_FILE, TENSORS_FILE, PromptArtifactError

    for sub in ("", "artifacts/prompt/"):
        dst = tmp / (sub.strip("/").replace("/", "-") or "plain")
        dst.mkdir()
        try:
            for name in (CONFIG_FILE, TENSORS_FILE):
                mlflow.artifacts.download_artifacts(artifact_uri=f"{uri.rstrip('/')}/{sub}{name}", dst_path=str(dst),
                                                    tracking_uri=tracking_uri)
        except (MlflowException, OSError):
            continue
        return dst
    raise PromptArtifactError(f"{uri} holds no prompt ({CONFIG_FILE} and {TENSORS_FILE}); expected a prompt "
                              "registered or logged by promptfarm")


def _install(src: Path, out: Path) -> None:
    """Copy the two prompt files from `src` into `out`, each into a fresh temporary file there renamed over the
    old name: a symlink already at out/prompt.safetensors is replaced itself, never written through to its target,
    and an interrupted copy leaves the old files whole."""
    import os
    import shutil
    import tempfile

    from pipeline.artifact import ARTIFACT_MODE, CONFIG_FILE, TENSORS_FILE

    out.mkdir(parents=True, exist_ok=True)
    staged: list[tuple[str, str]] = []
    try:
        for f in (TENSORS_FILE, CONFIG_FILE):
            fd, tmp = tempfile.mkstemp(prefix=f".{f}.", dir=out)  # O_EXCL: never an existing file or link
            staged.append((tmp, f))
            with os.fdopen(fd, "wb") as dst, open(src / f, "rb") as s:
                shutil.copyfileobj(s, dst)
            os.chmod(tmp, ARTIFACT_MODE)
        for tmp, f in staged:  # tensors first: the config that vouches for them lands last
            os.replace(tmp, out / f)
    finally:
        for tmp, _ in staged:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
