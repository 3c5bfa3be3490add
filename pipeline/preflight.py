"""Pre-flight: what a run needs that this machine can check, checked in the user's process before Ray starts,
in seconds, each failure a one-line `PreflightError` naming the value (a trial never discovers a typo).

(a) data files exist and every row parses with the task's columns and labels (streamed: SST-2's 60,614-row
train file in well under a second); (b) the backbone resolves (its HF config, no weights; a GGUF file is converted
once into its cache; a hub id not cached here needs the hub to answer a bounded probe); (c) the method config:
checked at load (pipeline.config); (d) one trial fits the local Ray cluster a search is about to start; (e) the
tracking store is reachable (http: a bounded GET of /health; sqlite/file: a writable directory).

Relative paths resolve against the current directory (`pipeline.config.absolute_path`); a submitted job's current
directory is its uploaded working dir. Remote paths (s3://...) are not checked here.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
from pathlib import Path
from urllib.parse import urlsplit

from pipeline.config import BackboneConfig, ConfigError, ExperimentConfig, TrainConfig, absolute_path

DATA_KEYS = {"data.train_file": "train", "data.validation_file": "validation"}
"""Config keys naming local data files, and the split each holds."""
HEALTH_TIMEOUT_S, HEALTH_TRIES = 5.0, 2  # a down tracking server costs at most ~10 s, not MLflow's minutes of retries
_TRUE = {"1", "ON", "YES", "TRUE"}  # huggingface_hub's true spellings of HF_HUB_OFFLINE
HUB_PROBE_TIMEOUT_S = 3.0  # an uncached hub id without network: one probe, not huggingface_hub's ~25 s of retries


class PreflightError(ConfigError):
    """A pre-flight check failed; the message is one line naming the value and what was expected."""


def check_run(cfg: ExperimentConfig, driver_cpu: float) -> None:
    """Pre-flight of a search or train-one about to run from this process: data files (search-space file
    choices included), resources (one trial's workers + `driver_cpu` for its driver), tracking store, backbone."""
    task = task_labels(cfg)
    for key, path, split in data_files(cfg):
        check_data_file(task, key, path, split)
    resources = local_resources(cfg.train.use_gpu)
    if resources is not None:
        check_fits(cfg.train, resources, driver_cpu, "this machine")
    check_tracking(tracking_uri(cfg.tracking.tracking_uri))
    check_backbone(cfg.backbone)  # last but one: the slowest (transformers import, a GGUF conversion on first use)
    check_lengths(cfg, task)


def task_labels(cfg: ExperimentConfig, base: Path | None = None):
    """The config's task with its label set (a classification task without `labels`: the training file's)."""
    from pipeline.data.sources import with_data_labels

    train = cfg.data.train_file
    try:
        return with_data_labels(cfg.data.task, str(_resolve(train, base)) if train else None)
    except (ValueError, OSError) as e:
        raise PreflightError(f"data.train_file: {e}") from None


def check_lengths(cfg: ExperimentConfig, task, stream=sys.stderr) -> None:
    """Label words and generation targets fit data.max_target_length (else an error); a warning on `stream`
    counts the inputs data.max_length cuts, per local data file. `task`: the config's task with its label set."""
    from pipeline.data.encode import Encoder, Encoding
    from pipeline.data.lengths import check_label_words, count_truncated
    from pipeline.model.backbone import load_hf_config, load_tokenizer

    seq2seq = bool(getattr(load_hf_config(cfg.backbone), "is_encoder_decoder", False))
    try:
        encoder = Encoder(load_tokenizer(cfg.backbone), seq2seq, Encoding.of(cfg.data))
        check_label_words(task, encoder)
        for key, path, split in data_files(cfg, space=False):
            cut, rows = count_truncated(task, encoder, str(_resolve(path, None)), split)
            if cut:
                print(f"[promptfarm] warning: {key}: {cut} of {rows} inputs are longer than data.max_length="
                      f"{cfg.data.max_length} tokens and lose their end", file=stream, flush=True)
    except ValueError as e:
        raise PreflightError(str(e)) from None


def check_evaluate(cfg: ExperimentConfig, split: str, file: str | None, uri: str) -> None:
    """Pre-flight of `evaluate CONFIG`: the data file (None: the hub split), tracking store, backbone."""
    if file:
        key = "data.validation_file" if file == cfg.data.validation_file else "--file"
        check_data_file(task_labels(cfg), key, file, split)
    check_tracking(uri)
    check_backbone(cfg.backbone)


def check_submission(job: str, cfg, working_dir: Path) -> None:
    """What `submit` checks before uploading: the data files and local backbone the job reads from its uploaded
    working dir. Paths outside it, hub ids and the tracking URI are resolved by the cluster, so the job's own
    pre-flight checks them there, before its trials start (the URI given is the one the cluster sees)."""
    if not isinstance(cfg, ExperimentConfig):  # a benchmark config: only its backbone
        files = []
    elif job == "evaluate":
        files = [f for f in data_files(cfg, space=False) if f[0] == "data.validation_file"]
    else:
        files = [] if job == "register" else data_files(cfg, space=job == "search")
    task = None  # its label set, read from the training file once, when a file needs checking
    for key, path, split in files:
        if _resolve(path, working_dir).is_relative_to(working_dir):
            task = task or task_labels(cfg, working_dir)
            check_data_file(task, key, path, split, working_dir)
    b = cfg.backbone
    full = _resolve(b.name_or_path, working_dir)
    if not (b.gguf or b.init_tiny) and b.name_or_path.startswith((".", "/")) and full.is_relative_to(working_dir):
        check_backbone(dataclasses.replace(b, name_or_path=str(full)))


def data_files(cfg: ExperimentConfig, space: bool = True) -> list[tuple[str, str, str]]:
    """(config key, path, split) of every local data file a run reads: data.* and, with `space`, the file
    choices in search.space (remote paths left out)."""
    out = [(k, getattr(cfg.data, k.split(".")[1]), split) for k, split in DATA_KEYS.items()]
    for key, dist in cfg.search.space.items() if space else ():
        plain = key.rpartition(":")[2]  # 'dept:data.train_file' in a multi-method space
        if plain in DATA_KEYS and isinstance(dist, dict) and isinstance(dist.get("choice"), list):
            out += [(f"search.space.{key}", str(v), DATA_KEYS[plain]) for v in dist["choice"]]
    return [(k, p, s) for k, p, s in out if p and "://" not in p]


def _resolve(path: str, base: Path | None) -> Path:
    return Path(absolute_path(path)) if base is None else (base / Path(path).expanduser()).resolve()


def check_data_file(task, key: str, path: str, split: str, base: Path | None = None) -> None:
    """`path` (relative: to `base`, default the current directory) exists and every row of `task` (a Task with
    its label set, or a built-in task's name) parses: a bad row anywhere fails here, not in a trial after Ray
    started (the trial reads it with the same checks)."""
    from pipeline.data.builtin import task_from
    from pipeline.data.sources import check_file

    full = _resolve(path, base)
    if not full.exists():
        where = "the current directory" if base is None else "the job's working dir"
        raise PreflightError(f"{key}={path!r}: data file {str(full)!r} not found; expected an existing JSONL/CSV/TSV "
                             f"file (relative paths resolve against {where}, {str(base or Path.cwd())!r})")
    try:
        check_file(task_from(task), split, str(full))
    except (ValueError, OSError) as e:  # already one line naming the file (and the line)
        raise PreflightError(f"{key}: {e}") from None


def check_backbone(b: BackboneConfig) -> None:
    """The backbone resolves: its HF config loads (local directory, hub id, or GGUF converted into its cache), and
    the quantisation it asks for is installed."""
    from huggingface_hub.errors import StrictDataclassError

    from pipeline.model.backbone import load_hf_config, quantization_config

    try:
        quantization_config(b)
    except ImportError as e:
        raise PreflightError(str(e)) from None
    if not (b.gguf or b.init_tiny):
        _check_hub_id(b)
    try:
        load_hf_config(b)
    except FileNotFoundError as e:  # GGUFError too: already one line naming the value
        raise PreflightError(str(e)) from None
    except (OSError, ValueError, StrictDataclassError) as e:  # a config.json transformers cannot read or refuses
        cause = e.__cause__ if isinstance(e, StrictDataclassError) and e.__cause__ else e  # (hidden % heads != 0)
        first = (str(cause).strip().splitlines() or [type(e).__name__])[0]
        name = b.gguf or b.name_or_path
        raise PreflightError(f"backbone {name!r} does not load as a model config: {first}") from None


def _check_hub_id(b: BackboneConfig) -> None:
    """A backbone name that is no local directory is a hub id: its config.json is in the Hugging Face cache, or
    the hub must be online and answer one bounded probe; else one line now, not transformers' retries (~25 s and
    a dozen lines without network)."""
    name = b.name_or_path
    if name.startswith((".", "/", "~")) or Path(name).expanduser().exists():
        return  # a local directory: load_hf_config names a missing one
    from huggingface_hub import constants, try_to_load_from_cache

    try:
        cached = try_to_load_from_cache(name, "config.json", revision=b.revision)
    except ValueError as e:  # HFValidationError: no 'org/name' repo id either
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise PreflightError(f"backbone.name_or_path={name!r} is not a local directory ({str(Path(name).resolve())!r} "
                             f"not found) nor a Hugging Face hub id ({first})") from None
    if isinstance(cached, str):
        return
    at = f"@{b.revision}" if b.revision else ""
    what = (f"backbone {name + at!r} is not a local directory and not in the Hugging Face cache "
            f"({constants.HF_HUB_CACHE})")
    fix = "expected a local model directory, a hub id already downloaded into that cache, or access to the hub"
    # the environment as well as huggingface_hub's copy of it, read once at its import
    offline = [v for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE") if os.environ.get(v, "").upper() in _TRUE]
    if offline or constants.HF_HUB_OFFLINE:
        raise PreflightError(f"{what}, and the hub is offline ({offline[0] if offline else 'HF_HUB_OFFLINE'}=1); {fix}")
    reason = _unreachable(f"{constants.ENDPOINT.rstrip('/')}/api/models/{name}", HUB_PROBE_TIMEOUT_S, 1, "HEAD")
    if reason is not None:
        raise PreflightError(f"{what}, and the hub {constants.ENDPOINT} is not reachable ({reason}; "
                             f"{HUB_PROBE_TIMEOUT_S:g} s timeout); {fix}")


def local_resources(use_gpu: bool) -> dict[str, float] | None:
    """CPUs and GPUs of the local Ray cluster `ray.init()` would start here; None when it would join a running
    cluster (already initialised, $RAY_ADDRESS, or one started by `ray start`): that one is checked once joined."""
    ray = sys.modules.get("ray")
    if (ray is not None and ray.is_initialized()) or os.environ.get("RAY_ADDRESS"):
        return None
    temp = os.environ.get("RAY_TMPDIR") or "/tmp"  # where `ray start` records the cluster ray.init would join
    if (Path(temp) / "ray" / "ray_current_cluster").exists():
        return None
    gpus = 0
    if use_gpu:
        import torch

        gpus = torch.cuda.device_count()
    return {"CPU": float(os.cpu_count() or 1), "GPU": float(gpus)}  # Ray sees at most these


def check_fits(t: TrainConfig, resources: dict[str, float], driver_cpu: float, where: str) -> None:
    """One trial (its workers + its driver's `driver_cpu`) fits `resources`: else it would wait forever."""
    need_cpu = t.num_workers * t.cpus_per_worker + driver_cpu
    cpus, gpus = resources.get("CPU", 0), resources.get("GPU", 0)
    if need_cpu > cpus or (t.use_gpu and t.num_workers > gpus):
        raise PreflightError(
            f"train.num_workers={t.num_workers} x train.cpus_per_worker={t.cpus_per_worker}"
            f"{' x 1 GPU' if t.use_gpu else ''} (+{driver_cpu} CPU for the trial driver) does not fit {where} "
            f"({cpus:g} CPUs, {gpus:g} GPUs); lower them")


def tracking_uri(uri: str | None) -> str:
    """The URI a run tracks to (config value, else $MLFLOW_TRACKING_URI, else ./mlruns.db)."""
    from pipeline.tracking.runs import resolve_tracking_uri

    return resolve_tracking_uri(uri)


def check_tracking(uri: str) -> None:
    """The tracking store answers (http/https) or its directory is writable (sqlite, file); nothing is created."""
    parts = urlsplit(uri)
    if parts.scheme in ("http", "https"):
        _check_http(uri)
    elif parts.scheme == "sqlite" and uri.startswith("sqlite:///"):
        db = Path(uri[len("sqlite:///"):])
        if not db.parent.is_dir() or not os.access(db.parent, os.W_OK):
            raise PreflightError(f"tracking store {uri}: directory {str(db.parent)!r} is missing or not writable; "
                                 "expected a writable directory for the sqlite file and mlartifacts/")
        if db.exists():
            _check_sqlite(uri, db)
    elif parts.scheme in ("", "file"):
        path = Path(parts.path if parts.scheme else uri).expanduser().resolve()
        existing = next(p for p in (path, *path.parents) if p.exists())
        if not os.access(existing, os.W_OK):
            raise PreflightError(f"tracking store {uri}: {str(existing)!r} is not writable; expected a writable "
                                 "directory for MLflow's file store")


def _check_sqlite(uri: str, db: Path) -> None:
    """An existing sqlite store is a readable, writable SQLite database (a corrupt one gave a 108-line traceback)."""
    import sqlite3

    if not db.is_file() or not os.access(db, os.R_OK | os.W_OK):
        raise PreflightError(f"tracking store {uri}: {str(db)!r} is not a readable and writable file; expected the "
                             "sqlite database MLflow writes (or no file yet)")
    try:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as con:
            con.execute("PRAGMA schema_version").fetchone()
    except sqlite3.Error as e:
        raise PreflightError(f"tracking store {uri}: {str(db)!r} is not a usable SQLite database ({e}); expected "
                             "the file MLflow wrote: restore it from a backup, or point tracking.tracking_uri at "
                             "another file") from None


def _check_http(uri: str) -> None:
    parts = urlsplit(uri)
    url = parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl().rstrip("/") + "/health"
    reason = _unreachable(url, HEALTH_TIMEOUT_S, HEALTH_TRIES)
    if reason is not None:
        raise PreflightError(f"tracking store {redact_uri(uri)} is not reachable ({reason}; GET /health, "
                             f"{HEALTH_TRIES} tries, {HEALTH_TIMEOUT_S:g} s timeout); expected a running MLflow server "
                             "at that URI (tracking.tracking_uri, --tracking-uri or $MLFLOW_TRACKING_URI)")


def _unreachable(url: str, timeout: float, tries: int, method: str = "GET") -> str | None:
    """None when `url` answers within `timeout` seconds in one of `tries` (any HTTP status counts, and so does a
    TLS failure: the server answered, and its TLS settings are the real client's to apply and report); else the
    first line of why not."""
    import http.client
    import ssl
    import urllib.error
    import urllib.request

    reason = ""
    for _ in range(tries):
        try:
            with urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=timeout):
                return None
        except urllib.error.HTTPError:  # an answer (an auth proxy, a server without /health, a 404 repo)
            return None
        except urllib.error.URLError as e:
            if isinstance(e.reason, ssl.SSLError):
                return None
            reason = str(e.reason)
        except (OSError, http.client.HTTPException) as e:
            reason = str(e) or type(e).__name__
    return (reason.strip().splitlines() or ["no answer"])[0]


def redact_uri(uri: str) -> str:
    """`uri` without a password, for messages."""
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    return parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@")).geturl()
