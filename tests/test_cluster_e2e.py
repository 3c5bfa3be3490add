"""The cluster path on one machine: a real Ray head (`ray start --head` on loopback) and a real `mlflow server`
(sqlite backend, artifacts proxied by the server). The smoke search is submitted as a Ray job with
`promptfarm submit`, tracks to the server over HTTP, and its champion is pulled and served from the server."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from .conftest import ROOT

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(ready, what: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    end = time.time() + timeout
    while time.time() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        with contextlib.suppress(Exception):
            if ready():
                return
        time.sleep(1)
    raise TimeoutError(f"{what} not up after {timeout:.0f} s")


def _stop(proc: subprocess.Popen) -> None:
    """Stop a server and everything it started: it runs in its own session, so its process group is all of it."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(15)
            return


@pytest.fixture
def mlflow_server(tmp_path):
    port = _port()
    proc = subprocess.Popen(
        [str(BIN / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
         "--artifacts-destination", str(tmp_path / "server-artifacts"), "--serve-artifacts",
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        start_new_session=True, stdout=subprocess.DEVNULL, stderr=open(tmp_path / "mlflow.log", "w"))  # noqa: SIM115
    uri = f"http://127.0.0.1:{port}"
    try:
        _wait(lambda: urllib.request.urlopen(f"{uri}/health", timeout=2).status == 200, "mlflow server", proc)
        yield uri
    finally:
        _stop(proc)


@pytest.fixture
def ray_head():
    """A separate local Ray cluster (not the tests' in-process one), token auth on as Ray's default."""
    from pipeline.submit import client

    temp = tempfile.mkdtemp(prefix="pfhead", dir="/tmp")  # short: Ray's socket paths must stay under 107 chars
    dash = _port()
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}  # job drivers run `python` from PATH
    proc = subprocess.Popen(
        [str(BIN / "ray"), "start", "--head", "--block", "--node-ip-address", "127.0.0.1", "--port", str(_port()),
         "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dash), "--num-cpus", "2", "--temp-dir", temp,
         "--disable-usage-stats"],
        env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    address = f"http://127.0.0.1:{dash}"
    try:
        _wait(lambda: client(address).list_jobs() is not None, "ray head", proc)
        yield address
    finally:
        _stop(proc)


def test_submitted_smoke_search_tracks_to_the_mlflow_server_and_its_champion_pulls(
        ray_head, mlflow_server, tmp_path, monkeypatch):
    import mlflow
    import pandas as pd
    from typer.testing import CliRunner

    from pipeline.cli import app
    from pipeline.methods.io import read_prompt_meta
    from pipeline.submit import client

    monkeypatch.chdir(ROOT)
    result = CliRunner().invoke(app, [
        "submit", "jobs/configs/smoke.yaml", "search.num_samples=2", "train.max_steps=6", "train.eval_every=3",
        "tracking.experiment=submitted", "--address", ray_head, "--tracking-uri", mlflow_server])
    assert result.exit_code == 0, result.output[-3000:]
    job_id = result.output.split("submitted ", 1)[1].split()[0]
    assert result.output.rstrip().endswith(f"{job_id} SUCCEEDED")
    assert "registered sst2-tiny-llama version 1 (champion)" in result.output
    assert [j.status.value for j in client(ray_head).list_jobs() if j.submission_id == job_id] == ["SUCCEEDED"]

    # The runs live on the server (its sqlite + proxied artifacts), not in any local store.
    mlflow_client = mlflow.MlflowClient(mlflow_server, registry_uri=mlflow_server)
    runs = mlflow_client.search_runs([mlflow_client.get_experiment_by_name("submitted").experiment_id])
    assert sorted(r.data.tags.get("promptfarm.role") for r in runs) == ["search", "trial", "trial"]

    out = tmp_path / "prompt"
    pulled = CliRunner().invoke(app, ["pull", "sst2-tiny-llama", "--out", str(out), "--tracking-uri", mlflow_server])
    assert pulled.exit_code == 0, pulled.output
    assert read_prompt_meta(out)["method"] == "pt"

    mlflow.set_tracking_uri(mlflow_server)
    mlflow.set_registry_uri(mlflow_server)
    try:
        model = mlflow.pyfunc.load_model("models:/sst2-tiny-llama@champion")
        labels = model.predict(pd.DataFrame({"text": ["a gripping, funny film", "dull and lifeless"]}))
    finally:
        mlflow.set_tracking_uri(None)
        mlflow.set_registry_uri(None)
    assert len(labels) == 2 and set(labels) <= {"negative", "positive"}
