"""Real servers for the cluster-path tests: a Ray head started with `ray start --head` on loopback and an
`mlflow server`; each runs in its own session so stopping its process group stops all it started."""

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
from dataclasses import dataclass
from pathlib import Path

BIN = Path(sys.executable).parent


@dataclass
class Head:
    """A running local Ray head."""

    gcs: str
    """GCS address (RAY_ADDRESS for drivers), 127.0.0.1:PORT."""
    jobs: str
    """Jobs API / dashboard URL."""
    temp: str
    """Its --temp-dir: session logs grow there while it starts and while its jobs run."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _listens(port: int) -> bool:
    """Whether something accepts TCP connections on 127.0.0.1:`port`."""
    with socket.socket() as s:
        s.settimeout(2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def tree_state(*paths: Path | str) -> tuple[int, int]:
    """(files, bytes) under `paths`: what a server, a search or a job has written so far (logs, results, runs)."""
    files = size = 0
    for root in map(Path, paths):
        for f in [root] if root.is_file() else root.rglob("*"):
            with contextlib.suppress(OSError):
                if f.is_file():
                    files, size = files + 1, size + f.stat().st_size
    return files, size


def wait_until(ready, what: str, proc: subprocess.Popen | None = None, progress=None, stall_s: float = 120,
               cap_s: float = 1800) -> None:
    """Poll `ready()` every second until it is true.

    Fails when `progress()` (a snapshot of what the awaited system has done, e.g. `tree_state` of its log and result
    directories; None: nothing observable) stays unchanged for `stall_s` seconds, so a loaded machine that is slow but
    moving never fails the wait; `cap_s` bounds the total. The failure says what was last seen and the last error.
    """
    start = since = time.monotonic()
    seen, error = None, None
    while True:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            if ready():
                return
            error = "not yet"
        except Exception as e:  # noqa: BLE001 - a server that is still starting refuses connections
            error = f"{type(e).__name__}: {e}"
        now = progress() if progress is not None else None
        if now != seen:
            seen, since = now, time.monotonic()
        stalled, total = time.monotonic() - since, time.monotonic() - start
        if stalled > stall_s or total > cap_s:
            why = f"no progress for {stalled:.0f} s" if stalled > stall_s else f"still moving after {total:.0f} s"
            raise TimeoutError(f"{what} not ready: {why}; last seen {seen!r}; last check: {error}")
        time.sleep(1)


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL, the process group of a server started with start_new_session=True."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(15)
            return


def start_mlflow(tmp: Path) -> tuple[subprocess.Popen, str]:
    """`mlflow server` with a sqlite backend and server-proxied artifacts under `tmp`; (process, http URI)."""
    port = free_port()
    proc = subprocess.Popen(
        [str(BIN / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{tmp / 'server.db'}",
         "--artifacts-destination", str(tmp / "server-artifacts"), "--serve-artifacts",
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        start_new_session=True, stdout=subprocess.DEVNULL, stderr=open(tmp / "mlflow.log", "w"))  # noqa: SIM115
    uri = f"http://127.0.0.1:{port}"
    wait_until(lambda: urllib.request.urlopen(f"{uri}/health", timeout=2).status == 200, "mlflow server", proc,
               progress=lambda: tree_state(tmp))
    return proc, uri


def start_head() -> tuple[subprocess.Popen, Head]:
    """A separate local Ray cluster (2 CPUs), not the tests' in-process one; token auth on, Ray's default."""
    from pipeline.submit import client

    temp = tempfile.mkdtemp(prefix="pfhead", dir="/tmp")  # short: Ray's socket paths must stay under 107 chars
    gcs, dash = free_port(), free_port()
    # Every port of its own: another local cluster (the tests' in-process one) already holds Ray's fixed defaults,
    # e.g. the dashboard agent's 52365, and a head whose agent cannot bind accepts no jobs.
    agent = free_port()
    ports = [f"--dashboard-agent-listen-port={agent}"] + [
        f"--{name}={free_port()}" for name in ("dashboard-agent-grpc-port", "metrics-export-port",
                                               "runtime-env-agent-port", "ray-client-server-port")]
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}  # job drivers run `python` from PATH
    proc = subprocess.Popen(
        [str(BIN / "ray"), "start", "--head", "--block", "--node-ip-address", "127.0.0.1", "--port", str(gcs),
         "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dash), "--num-cpus", "2", "--temp-dir", temp,
         "--disable-usage-stats", *ports],
        env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    head = Head(f"127.0.0.1:{gcs}", f"http://127.0.0.1:{dash}", temp)
    # Ready when the Jobs API answers and the node's job agent listens: the head serves the API seconds before its
    # agent is up, and a submission in between is refused ("No available agent to submit job").
    wait_until(lambda: client(head.jobs).list_jobs() is not None and _listens(agent), "ray head and its job agent",
               proc, progress=lambda: tree_state(temp))
    return proc, head
