"""Shared fixtures: tiny random backbones written to disk once per session and loaded like hub models."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"  # tests never reach a hub, whatever the caller's environment says
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["RAY_USAGE_STATS_ENABLED"] = "0"  # nor Ray's usage-stats endpoint
os.environ.setdefault("DS_ACCELERATOR", "cpu")

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
SHARED_SST2 = ROOT.parent / "shared" / "data" / "sst2"


@pytest.fixture(scope="session")
def ray_cluster():
    """A real local Ray cluster (2 CPUs) shared by the end-to-end and fault tests.

    With the dashboard, as `promptfarm search` starts it for worker-group trials (pipeline.tune.cluster.
    wants_dashboard): some tests here run them, and without the State API each Train controller that Tune ends leaves
    a PlacementGroupCleaner actor polling and warning every second for the rest of the session.
    """
    import ray

    # Workers' stdout reaches this process (as in `promptfarm search`): the e2e test checks the progress lines.
    env = {"DS_ACCELERATOR": "cpu", "RAY_TRAIN_ENABLE_PRINT_PATCH": "0", "TRANSFORMERS_VERBOSITY": "error"}
    ray.init(num_cpus=2, include_dashboard=True, runtime_env={"env_vars": env}, log_to_driver=True)
    yield
    ray.shutdown()


@pytest.fixture
def mlflow_server(tmp_path):
    """URI of a real `mlflow server` on loopback (sqlite backend, artifacts proxied), stopped afterwards."""
    from .servers import start_mlflow, stop

    proc, uri = start_mlflow(tmp_path)
    try:
        yield uri
    finally:
        stop(proc)


@pytest.fixture
def ray_head():
    """A real Ray head (`ray start --head` on loopback) separate from `ray_cluster`; its Head addresses."""
    from .servers import start_head, stop

    proc, head = start_head()
    try:
        yield head
    finally:
        stop(proc)


@pytest.fixture(scope="session")
def gloo_world():
    """One gloo process group of one (rank 0) for the whole session, for tests that build DeepSpeed engines in this
    process: DeepSpeed caches the first group it wraps, so a second group made after destroying the first breaks
    it ("Group ... is not registered"). Of the launcher variables only LOCAL_RANK (which DeepSpeed's engine asserts)
    stays in the environment: Ray clusters started later by other tests must not inherit a rank and world size."""
    import os

    from pipeline.model.zero import world_of_one

    with world_of_one():
        saved = {k: os.environ.pop(k) for k in ("MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE")}
        yield
        os.environ.update(saved)


@pytest.fixture(scope="session")
def tiny_dirs(tmp_path_factory) -> dict[str, Path]:
    """{'llama': dir, 't5': dir} holding tiny random models + tokenizers (hidden 32)."""
    from pipeline.model.tiny import write_tiny_model

    base = tmp_path_factory.mktemp("backbones")
    return {fam: write_tiny_model(fam, base / f"tiny-{fam}", hidden=32) for fam in ("llama", "t5")}


@pytest.fixture(scope="module", params=["llama", "t5"])
def backbone(request):
    """(frozen tiny model built in memory, its BackboneInfo), once per family (per-method test files)."""
    from pipeline.config import BackboneConfig
    from pipeline.model.backbone import loaded_backbone_info
    from pipeline.model.tiny import build_model

    from .method_helpers import HIDDEN, VOCAB

    model = build_model(request.param, VOCAB, hidden=HIDDEN, seed=0)
    model.requires_grad_(False)
    return model, loaded_backbone_info(model, BackboneConfig(name_or_path="tiny"))


@pytest.fixture(scope="session")
def backbones(tiny_dirs):
    """{'llama': (model, tokenizer, info), 't5': ...} loaded through pipeline.model.backbone.load_backbone."""
    from pipeline.config import BackboneConfig
    from pipeline.model.backbone import load_backbone

    return {fam: load_backbone(BackboneConfig(name_or_path=str(d))) for fam, d in tiny_dirs.items()}
