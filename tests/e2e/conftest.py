"""One search for every test that only reads a search's results: an ASHA search over every registered method on the
tests' local Ray cluster (tiny LLaMA, one 24-step trial per method, champion registered), run once per session."""

from __future__ import annotations

import contextlib
import io
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import ROOT

SMOKE = ROOT / "jobs" / "configs" / "smoke.yaml"
# In-trial progress from rank 0, through the driver: every 10 steps (progress_every) and at the last step.
PROGRESS = r"\[promptfarm\] trial \S+ step (\d+)/24 train_loss [\d.]+ [\d.]+ steps/s [\d,]+ tokens/s ETA"
THREADS = r"training from step \d+ on (\d+) torch threads"


@dataclass
class SharedSearch:
    """A finished search and where it wrote: tests read these and never write into them."""

    summary: object
    """pipeline.tune.search.SearchSummary of the search."""
    cfg: object
    """Its ExperimentConfig."""
    uri: str
    """MLflow tracking and registry URI (sqlite)."""
    root: Path
    """Its private directory: Ray results under ray/, the tiny backbone under tiny-llama/."""
    output: str
    """What the driver printed while the search ran, Ray's forwarded worker lines included."""


class _Tee(io.TextIOBase):
    """Writes through to `sink` and keeps a copy: the test still shows the output, and can read it."""

    def __init__(self, sink) -> None:
        self.sink, self.copy = sink, io.StringIO()

    def write(self, text: str) -> int:
        self.copy.write(text)
        return self.sink.write(text)

    def flush(self) -> None:
        self.sink.flush()


@pytest.fixture(scope="session")
def shared_search(ray_cluster, tmp_path_factory) -> SharedSearch:
    from pipeline.config import load_config
    from pipeline.tune.search import run_search

    root = tmp_path_factory.mktemp("shared-search")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    cfg = load_config(SMOKE, [
        f"storage_path={root / 'ray'}", f"tracking.tracking_uri={uri}", f"backbone.name_or_path={root / 'tiny-llama'}",
        "name=every-method", "search.num_samples=1", "search.method_grid=true", "search.default_space=false",
        "search.space={}",
        "search.methods={pt: {num_tokens: 4}, dept: {num_tokens: 4, max_length: 64}, adept: {num_tokens: 4}, "
        "ept: {num_tokens: 4, max_length: 64}, lamp: {num_tokens: 8, rank: 2, pool: 2, lr: 0.05}}"])
    tee = _Tee(sys.stdout)
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(tee):
        mp.chdir(ROOT)  # the smoke config's data paths are relative to the repository
        summary = run_search(cfg)
        # Ray's log monitor forwards worker lines asynchronously (seconds behind on a loaded machine): wait for
        # every trial's last progress line, giving up after 60 s with nothing new (or 5 minutes in all).
        completed = sum(t.status == "completed" for t in summary.trials)
        seen, quiet_since, start = "", time.monotonic(), time.monotonic()
        while time.monotonic() - quiet_since < 60 and time.monotonic() - start < 300:
            out = tee.copy.getvalue()
            if (len(re.findall(r"step 24/24 ", out)) >= completed
                    and len(re.findall(THREADS, out)) >= len(summary.trials)):
                break
            seen, quiet_since = out, time.monotonic() if out != seen else quiet_since
            time.sleep(1)
    return SharedSearch(summary, cfg, uri, root, tee.copy.getvalue())
