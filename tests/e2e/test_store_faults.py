"""The stores a search writes failing mid-search, once the first checkpoint is saved: one error line naming the
store, what to do and the resume command, no traceback, exit 1.

- storage_path on a 20 MB tmpfs, filled: the search run is left resumable; `--resume` of the state the full disk
  truncated refuses in one line and points at `register --search-id`, which registers the best prompt from MLflow.
- the sqlite tracking store made immutable (chattr +i): `--resume` once it is writable again retries the trials
  that failed on it from their checkpoints, and the search finishes and registers.
Both need root (mount, chattr); CI and the dev machines run as root."""

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


def _after_first_checkpoint(storage: Path, stop: threading.Event, act) -> None:
    """Call `act()` once a trial's first checkpoint is under `storage`."""
    while not stop.is_set():
        if any(storage.glob("*/driver*/checkpoint_*")):
            act()
            return
        time.sleep(0.2)


def _search(args: list[str], env: dict, storage: Path, act) -> subprocess.CompletedProcess:
    stop = threading.Event()
    watcher = threading.Thread(target=_after_first_checkpoint, args=(storage, stop, act), daemon=True)
    watcher.start()
    try:
        return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    finally:
        stop.set()
        watcher.join(timeout=10)


def _args(tmp_path: Path, storage: Path, uri: str, name: str) -> list[str]:
    return [sys.executable, "-m", "pipeline.cli", "search", str(SMOKE), f"storage_path={storage}",
            f"backbone.name_or_path={tmp_path / 'tm'}", f"tracking.tracking_uri={uri}", "search.num_samples=2",
            "train.max_steps=48", f"tracking.model_name={name}"]


def _one_error_line(run: subprocess.CompletedProcess) -> str:
    """The last stderr line, once no traceback and no `Aborted.` was printed."""
    out = run.stdout + run.stderr
    assert run.returncode == 1, out[-3000:]
    assert "Traceback" not in out and "Aborted" not in out, out[-3000:]
    return [ln for ln in run.stderr.splitlines() if ln.strip()][-1]


def _fill(disk: Path) -> None:
    """Write zeros until the disk is full."""
    with open(disk / "fill", "wb") as f:
        try:
            while True:
                f.write(b"\0" * (1 << 20))
                f.flush()
        except OSError:
            return


def test_a_full_storage_path_is_one_line_and_the_search_is_recovered_from_mlflow(tmp_path, small_disk, ray_cluster):
    import ray

    from pipeline.tracking.runs import mlflow_client

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    storage = small_disk / "ray"
    args = _args(tmp_path, storage, uri, "full-disk")
    env = {**os.environ, "RAY_ADDRESS": ray.get_runtime_context().gcs_address}
    run = _search(args, env, storage, lambda: _fill(small_disk))
    out = run.stdout + run.stderr
    assert (small_disk / "fill").exists(), out[-3000:]  # the disk did fill mid-search
    client = mlflow_client(uri)
    exp = client.get_experiment_by_name("smoke").experiment_id
    (parent,) = client.search_runs([exp], filter_string="tags.`promptfarm.role` = 'search'")
    search_id = parent.data.tags["promptfarm.search_id"]
    last = _one_error_line(run)
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


@pytest.fixture
def immutable(tmp_path):
    """chattr +i on a file, undone afterwards; skipped where chattr is not allowed."""
    probe = tmp_path / "probe"
    probe.write_text("x")
    if subprocess.run(["chattr", "+i", str(probe)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not allowed here")
    subprocess.run(["chattr", "-i", str(probe)], check=True)
    made: list[Path] = []

    def make(path: Path) -> None:
        subprocess.run(["chattr", "+i", str(path)], check=True)
        made.append(path)

    yield make
    for path in made:
        subprocess.run(["chattr", "-i", str(path)], check=True)


def test_an_unwritable_tracking_store_is_one_line_and_resume_retries_its_trials(tmp_path, immutable, ray_cluster):
    import ray

    from pipeline.tracking.runs import mlflow_client

    db = tmp_path / "mlflow.db"
    uri, storage = f"sqlite:///{db}", tmp_path / "ray"
    args = _args(tmp_path, storage, uri, "store-fault")
    env = {**os.environ, "RAY_ADDRESS": ray.get_runtime_context().gcs_address}
    run = _search(args, env, storage, lambda: immutable(db))
    last = _one_error_line(run)
    subprocess.run(["chattr", "-i", str(db)], check=True)  # writable again
    client = mlflow_client(uri)
    (parent,) = client.search_runs([client.get_experiment_by_name("smoke").experiment_id],
                                   filter_string="tags.`promptfarm.role` = 'search'")
    search_id = parent.data.tags["promptfarm.search_id"]
    assert last.startswith(f"error: tracking store {uri} could not be written during search '{search_id}' ("), last
    assert "readonly database" in last or "disk I/O error" in last or "unable to open database file" in last, last
    assert last.endswith(f"then resume it with: promptfarm search {SMOKE} {' '.join(args[5:])} --resume {search_id}")

    resumed = subprocess.run([*args, "--resume", search_id], cwd=ROOT, env=env, capture_output=True, text=True,
                             timeout=600)
    assert resumed.returncode == 0, (resumed.stdout + resumed.stderr)[-3000:]
    assert "registered store-fault version 1 (champion)" in resumed.stdout
    assert client.get_run(parent.info.run_id).info.status == "FINISHED"
