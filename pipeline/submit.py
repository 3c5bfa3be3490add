"""Submit promptfarm jobs to a Ray cluster through its Jobs API (Ray's JobSubmissionClient).

    promptfarm submit jobs/configs/smoke.yaml --address http://127.0.0.1:8265 --tracking-uri http://mlflow:5000
    promptfarm jobs list | logs ID | stop ID

The job runs `python -m jobs.<job> CONFIG [k=v ...]` in a copy of the working directory on the cluster (Ray
uploads it, honouring .gitignore), with MLFLOW_TRACKING_URI and other env vars set by the runtime env.
"""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import time
from collections.abc import Callable
from pathlib import Path

from pipeline.preflight import check_submission

DEFAULT_ADDRESS = "http://127.0.0.1:8265"
TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")
AGENT_WAIT_S = 60  # how long a submission waits for a freshly started head's job agent
# (connect, read) seconds per Jobs API request. Ray's client sends requests without a timeout, so a head that accepts
# TCP but never answers (stuck dashboard, wrong port behind a proxy) hung `jobs list` and `submit` forever. The read
# bound is per socket read, not per upload: a large working dir still uploads.
REQUEST_TIMEOUT_S = (10.0, 60.0)
# Never uploaded with the working dir (gitignore patterns; Ray also skips what .gitignore names): local stores and
# caches the cluster must not see, and secrets, which anyone holding the Ray token could read from the job's copy.
EXCLUDES = [".git", ".venv", "ray_results", "mlruns", "mlruns.db", "mlartifacts", ".promptfarm", "*.pyc",
            "*.db", "*.sqlite", "*.sqlite3",  # other tracking stores
            ".env", ".env.*", ".netrc", ".pgpass", ".git-credentials", ".aws", ".ssh", ".kube", "secrets",
            "id_rsa*", "id_dsa*", "id_ecdsa*", "id_ed25519*", "*.pem", "*.key", "*.p12", "*.pfx"]
LARGE_BYTES = 50 << 20  # an uploaded file this big is named in a note before the upload


def _experiment(path: Path, keys: list[str]) -> list:
    from pipeline.config import load_config

    return [load_config(path, keys)]


def _benchmark(path: Path, keys: list[str]) -> list:
    from pipeline.bench.config import load_bench_config

    return [load_bench_config(path, keys)]


def _suite(path: Path, keys: list[str]) -> list:
    from pipeline.suite.config import load_suite_config, task_config

    suite = load_suite_config(path, keys)
    return [task_config(suite, t) for t in suite.tasks]  # each task's search is checked like a search


def _study(path: Path, keys: list[str]) -> list:
    from pipeline.bench.study_config import arm_config, load_study_config

    study = load_study_config(path, keys)
    return [arm_config(study, a) for a in study.arms]  # each arm trains like one trial


def _search_bench(path: Path, keys: list[str]) -> list:
    from pipeline.bench.search_config import experiment, load_search_bench_config

    cfg = load_search_bench_config(path, keys)
    return [experiment(cfg, part) for part in ("ours", "methods")]  # both searches are checked like searches


# The job entry points shipped in jobs/ and the loader of each one's CONFIG, returning the configs to pre-flight. The
# library owns this table so it never imports jobs/; a test checks it names exactly the modules under jobs/.
JOBS = {"search": _experiment, "train_one": _experiment, "evaluate": _experiment, "register": _experiment,
        "benchmark": _benchmark, "suite": _suite, "bench_trials": _experiment, "bench_ablation": _study,
        "bench_travel": _study, "bench_search": _search_bench}
# the pre-flight rules each job's configs are checked with (a suite's tasks are searches, a study's arms trials)
_CHECK_AS = {"suite": "search", "bench_trials": "search", "bench_ablation": "train_one", "bench_travel": "train_one",
             "bench_search": "search"}


class SubmitError(ValueError):
    """A submission that cannot work as asked (unknown job, config outside the working dir, bad env var)."""


def resolve_address(address: str | None) -> str:
    """Explicit address, else $RAY_API_SERVER_ADDRESS / $RAY_ADDRESS when it is an http(s) URL, else loopback."""
    if address and not address.startswith(("http://", "https://")):
        raise SubmitError(f"--address {address!r} is not a Jobs API URL; expected http://HEAD:8265")
    for cand in (address, os.environ.get("RAY_API_SERVER_ADDRESS"), os.environ.get("RAY_ADDRESS")):
        if cand and cand.startswith(("http://", "https://")):
            return cand
    return DEFAULT_ADDRESS


def auth_headers() -> dict[str, str]:
    """Bearer header from Ray's token sources ($RAY_AUTH_TOKEN, $RAY_AUTH_TOKEN_PATH, ~/.ray/auth_token), if any.

    Ray >= 2.59 local clusters require the token, but its client sends it only when this process runs in token
    mode; passing the header explicitly works either way (a cluster without auth ignores it).
    """
    token = os.environ.get("RAY_AUTH_TOKEN", "").strip()
    path = Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token")
    if not token and path.is_file():
        token = path.read_text().strip()
    return {"Authorization": f"Bearer {token}"} if token else {}


def client(address: str | None = None):
    """A JobSubmissionClient for the cluster at `address`, authenticated when a Ray token is configured, whose
    requests fail with a one-line SubmitError after REQUEST_TIMEOUT_S instead of waiting forever."""
    import requests
    from ray.job_submission import JobSubmissionClient

    url = resolve_address(address)

    class Bounded(JobSubmissionClient):  # the one hook Ray's client has for per-request options
        def _do_request(self, method, endpoint, **kw):
            kw.setdefault("timeout", REQUEST_TIMEOUT_S)
            try:
                return super()._do_request(method, endpoint, **kw)
            except requests.exceptions.Timeout:
                raise SubmitError(f"the Ray Jobs API at {url} did not answer {method} {endpoint} within "
                                  f"{REQUEST_TIMEOUT_S[1]:.0f} s (expected a running head's dashboard port, "
                                  "default 8265)") from None

    try:
        return Bounded(url, headers=auth_headers())
    except SubmitError:
        raise
    except Exception as e:  # ConnectionError, AuthenticationError: Ray's messages run to many lines
        first = str(e).strip().splitlines()[0]
        raise SubmitError(f"cannot use the Ray Jobs API at {url}: {first} (expected a running head and, with token "
                          "auth, its token in ~/.ray/auth_token or $RAY_AUTH_TOKEN)") from None


def parse_env(pairs: list[str]) -> dict[str, str]:
    """['K=V', ...] -> {K: V}; a pair without '=' is an error naming it."""
    out = {}
    for pair in pairs:
        key, eq, value = pair.partition("=")
        if not eq or not key:
            raise SubmitError(f"--env {pair!r} is not KEY=VALUE")
        out[key] = value
    return out


def job_spec(job: str, config: Path, overrides: list[str], working_dir: Path, env: dict[str, str],
             tracking_uri: str | None, excludes: list[str] = ()) -> tuple[str, dict]:
    """(entrypoint, runtime_env) of one job; validates the job name, the config and the job's pre-flight checks of
    files under `working_dir` (pipeline.preflight.check_submission) locally before anything is sent. `excludes`:
    more gitignore patterns kept from the upload, besides EXCLUDES and each config's own storage_path.

    The CONFIG is validated by the job's own loader (JOBS): experiments, a benchmark's or a suite's config.
    """
    # One name per job: its module under jobs/ (the CLI command it runs may be spelled with '-')
    name, module = job, f"jobs.{job}"
    if name not in JOBS:
        close = [j for j in JOBS if j == job.replace("-", "_")]
        hint = f" (the job of `promptfarm {job}` is {close[0]!r})" if close else ""
        raise SubmitError(f"job {job!r} is not a module in jobs/; expected one of {', '.join(job_names())}{hint}")
    working_dir = working_dir.resolve()
    try:
        rel = config.resolve().relative_to(working_dir)
    except ValueError:
        raise SubmitError(f"config {config} is outside the working dir {working_dir}; the job sees only files "
                          "under it") from None
    # bad keys/values fail here, in one line, not minutes later on the cluster; options like --search-id pass through
    keys = [a for a in overrides if re.match(r"[A-Za-z_][\w.]*=", a)]
    skip = [*EXCLUDES, *excludes]
    for cfg in JOBS[name](config, keys):
        check_submission(_CHECK_AS.get(name, name), cfg, working_dir)
        skip += _storage_under(cfg, working_dir)
    env = dict(env)
    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        env["MLFLOW_TRACKING_URI"] = uri
    if "MLFLOW_TRACKING_URI" in env:
        _no_credentials(env["MLFLOW_TRACKING_URI"])
    entrypoint = shlex.join(["python", "-m", module, rel.as_posix(), *overrides])
    return entrypoint, {"working_dir": str(working_dir), "excludes": list(dict.fromkeys(skip)), "env_vars": env}


def _storage_under(cfg, working_dir: Path) -> list[str]:
    """The config's local storage_path as an exclude pattern when it lies inside the uploaded dir."""
    storage = getattr(cfg, "storage_path", None)
    if not storage or "://" in storage:
        return []
    try:
        rel = (working_dir / Path(storage).expanduser()).resolve().relative_to(working_dir)
    except ValueError:
        return []
    return [f"/{rel.as_posix()}/"] if rel.parts else []


def _no_credentials(uri: str, key: str = "--tracking-uri") -> str:
    """`uri` unchanged, unless it carries user:password@, which the job's env would show anyone with the token."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(uri)
    except ValueError:
        return uri
    if parts.password is not None or (parts.username and "@" in parts.netloc):
        raise SubmitError(f"{key} {parts.scheme}://***@{parts.hostname}... carries credentials, and a job's env vars "
                          "are readable by anyone holding the Ray token; expected a URI without user:password@ and "
                          "the credentials set on the cluster (MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD "
                          "from a secret)")
    return uri


def large_files(working_dir: Path, excludes: list[str], limit: int = LARGE_BYTES) -> list[tuple[str, int]]:
    """(relative path, bytes) of files the upload would carry that are `limit` bytes or more (approximate
    gitignore matching: a pattern matches any one path component, or a /rooted/ path)."""
    import fnmatch

    def skipped(rel: str) -> bool:
        parts = rel.split("/")
        for pat in excludes:
            if pat.startswith("/"):
                if (rel + "/").startswith(pat.strip("/") + "/"):
                    return True
            elif any(fnmatch.fnmatch(part, pat.rstrip("/")) for part in parts):
                return True
        return False

    found = []
    for root, dirs, files in os.walk(working_dir):
        base = Path(root).relative_to(working_dir).as_posix()
        prefix = "" if base == "." else base + "/"
        dirs[:] = [d for d in dirs if not skipped(prefix + d)]
        for f in files:
            rel, path = prefix + f, Path(root) / f
            if not skipped(rel) and path.is_file() and (size := path.stat().st_size) >= limit:
                found.append((rel, size))
    return sorted(found, key=lambda x: -x[1])


def job_names() -> list[str]:
    """Job entry points shipped in jobs/ (module names, e.g. 'search', 'train_one')."""
    return sorted(JOBS)


def submit(config: Path, overrides: list[str], address: str | None = None, job: str = "search",
           env: dict[str, str] | None = None, working_dir: Path = Path("."), tracking_uri: str | None = None,
           excludes: list[str] = (), echo: Callable[[str], None] = print) -> str:
    """Submit `python -m jobs.<job> CONFIG overrides` to the cluster; the submission id. Files of LARGE_BYTES or
    more that the upload carries are named first (`excludes` keeps them out)."""
    entrypoint, runtime_env = job_spec(job, config, overrides, working_dir, env or {}, tracking_uri, excludes)
    for rel, size in large_files(Path(runtime_env["working_dir"]), runtime_env["excludes"])[:5]:
        echo(f"note: uploading {rel} ({size / 2**20:.0f} MiB); keep it out with --exclude {rel}")
    c = client(address)
    deadline = time.monotonic() + AGENT_WAIT_S
    while True:
        try:
            return c.submit_job(entrypoint=entrypoint, runtime_env=runtime_env)
        except RuntimeError as e:  # a head that just started serves the API before its node agent is up
            if "No available agent" not in str(e) or time.monotonic() > deadline:
                raise SubmitError(f"the cluster refused the job: {str(e).strip().splitlines()[0]}") from None
            time.sleep(2)


def follow(job_id: str, address: str | None = None, echo: Callable[[str], None] = print) -> str:
    """Stream the job's logs until it ends; its final status name (SUCCEEDED, FAILED, STOPPED)."""
    c = client(address)

    async def tail() -> None:
        async for lines in c.tail_job_logs(job_id):
            echo(lines.rstrip("\n"))

    asyncio.run(tail())
    while (status := str(c.get_job_status(job_id).value)) not in TERMINAL:  # logs may close just before the end
        time.sleep(0.5)
    return status
