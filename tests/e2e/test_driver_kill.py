"""A `promptfarm search` killed with SIGKILL (an OOM kill, `kill -9`) mid-trial on the embedded local cluster leaves
no process behind: the GCS, the raylet, the dashboard and runtime-env agents and the trial's worker all exit on
their own, since nothing of the driver runs after the kill."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from tests.conftest import ROOT
from tests.servers import wait_until

pytestmark = pytest.mark.slow
SMOKE = ROOT / "jobs" / "configs" / "smoke.yaml"


def _in_session(sid: int) -> list[psutil.Process]:
    """Live processes of session `sid` (the killed driver's: Ray's processes inherit it)."""
    out = []
    for p in psutil.process_iter(["pid", "status"]):
        try:
            if os.getsid(p.pid) == sid and p.info["status"] != psutil.STATUS_ZOMBIE:
                out.append(p)
        except (ProcessLookupError, PermissionError):
            continue
    return out


def test_a_killed_driver_leaves_no_ray_process_behind(tmp_path):
    args = [sys.executable, "-m", "pipeline.cli", "search", str(SMOKE), f"storage_path={tmp_path / 'ray'}",
            f"tracking.tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}", "train.max_steps=300", "train.eval_every=100"]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}  # the embedded cluster, its own
    log = tmp_path / "search.log"  # a file, not a pipe: Ray's processes inherit the descriptor
    with open(log, "w") as sink:  # its own session, so every process it starts can be found (and only those)
        proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True)
    try:
        wait_until(lambda: "training from step" in log.read_text(), "a training trial", proc=proc,
                   progress=lambda: log.stat().st_size)
        started = {p.name() for p in _in_session(proc.pid)}
        assert any("raylet" in n for n in started) and any("gcs" in n for n in started), started
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        killed = time.monotonic()
        wait_until(lambda: not _in_session(proc.pid), "every process of the killed search to exit", stall_s=240,
                   progress=lambda: sorted(p.pid for p in _in_session(proc.pid)))
        assert time.monotonic() - killed < 240
    finally:
        for p in _in_session(proc.pid):  # only what this test started
            p.kill()
