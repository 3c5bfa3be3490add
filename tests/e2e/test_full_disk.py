"""A search whose storage_path fills mid-search (a 20 MB tmpfs, filled once the first checkpoint is saved): one
error line naming the path, what to do and the resume command, no traceback, exit 1; the search run left
resumable; `--resume` of the truncated state refuses in one line and points at `register --search-id`, which
registers the best prompt from MLflow. Needs root to mount the tmpfs (CI and the dev machines run as root)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow
SMOKE = ROOT / "jobs" / "configs" / "smoke.yaml"


@pytest.fixture
def small_disk(tmp_path):
    """A 20 MB tmpfs at tmp_path/disk, unmounted afterwards (only this mount, by its path)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=20m", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()[:100]}")
    yield disk
    subprocess.run(["umount", str(disk)], check=True)


def _fill_after_first_checkpoint(disk: Path, stop: threading.Event) -> None:
    """Once a trial's first checkpoint is on the disk, write zeros until the disk is full."""
    while not stop.is_set():
        if any(disk.glob("ray/*/driver*/checkpoint_*")):
            with open(disk / "fill", "wb") as f:
                try:
                    while True:
                        f.write(b"\0" * (1 << 20))
                        f.flush()
                except OSError:
                    return
        time.sleep(0.2)


def test_a_full_storage_path_is_one_line_and_the_search_is_recovered_from_mlflow(tmp_path, small_disk, ray_cluster):
    import ray

    from pipeline.tracking.runs import mlflow_client

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    storage = small_disk / "ray"
    args = [sys.executable, "-m", "pipeline.cli", "search", str(SMOKE), f"storage_path={storage}",
            f"backbone.name_or_path={tmp_path / 'tm'}", f"tracking.tracking_uri={uri}", "search.num_samples=2",
            "train.max_steps=48", "tracking.model_name=full-disk"]
    env = {**os.environ, "RAY_ADDRESS": ray.get_runtime_context().gcs_address}
    stop = threading.Event()
    filler = threading.Thread(target=_fill_after_first_checkpoint, args=(small_disk, stop), daemon=True)
    filler.start()
    try:
        run = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    finally:
        stop.set()
        filler.join(timeout=10)
    out = run.stdout + run.stderr
    assert (small_disk / "fill").exists(), out[-3000:]  # the disk did fill mid-search
    client = mlflow_client(uri)
    exp = client.get_experiment_by_name("smoke").experiment_id
    (parent,) = client.search_runs([exp], filter_string="tags.`promptfarm.role` = 'search'")
    search_id = parent.data.tags["promptfarm.search_id"]
    assert run.returncode == 1, out[-3000:]
    assert "Traceback" not in out and "Aborted" not in out, out[-3000:]
    last = [ln for ln in run.stderr.splitlines() if ln.strip()][-1]
    assert last.startswith(f"error: storage_path '{storage}' is full (No space left on device while Ray saved the "
                           f"state and checkpoints of search '{search_id}')"), last
    assert last.endswith(f"then resume it with: promptfarm search {SMOKE} {' '.join(args[5:])} --resume {search_id}")
    assert client.get_run(parent.info.run_id).info.status == "KILLED"
    assert client.get_run(parent.info.run_id).data.tags["promptfarm.state"] == "interrupted"

    (small_disk / "fill").unlink()  # space freed: the state Ray wrote while the disk was full is cut short
    resumed = subprocess.run([*args, "--resume", search_id], cwd=ROOT, env=env, capture_output=True, text=True,
                             timeout=600)
    lines = [ln for ln in resumed.stderr.splitlines() if ln.strip()]
    assert resumed.returncode == 2 and len(lines) == 1, (resumed.stdout + resumed.stderr)[-3000:]
    assert lines[0].startswith(f"error: search '{search_id}' cannot be resumed: ") and "is empty" in lines[0]
    assert lines[0].endswith(f"`promptfarm register CONFIG --search-id {search_id}`")

    registered = subprocess.run([sys.executable, "-m", "pipeline.cli", "register", str(SMOKE), *args[5:],
                                 "--search-id", search_id], cwd=ROOT, env=env, capture_output=True, text=True,
                                timeout=300)
    assert registered.returncode == 0, registered.stdout + registered.stderr
    assert "registered full-disk version 1 (champion)" in registered.stdout
