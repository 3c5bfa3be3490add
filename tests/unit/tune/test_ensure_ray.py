"""The embedded local Ray a search starts: the dashboard only for worker-group trials or when asked for, and never a
second start."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize(("env", "workers", "dashboard"), [
    (None, 1, False), ("0", 1, False), ("1", 1, True),  # in-process trials: only when asked
    (None, 2, True), ("0", 2, False), ("1", 2, True),  # worker groups: their placement-group cleaners need it
])
def test_embedded_ray_starts_the_dashboard_for_worker_groups_or_when_asked(env, workers, dashboard, monkeypatch):
    import ray

    from pipeline.config import ExperimentConfig
    from pipeline.tune.cluster import ensure_ray

    calls: list[dict] = []
    monkeypatch.setattr(ray, "is_initialized", lambda: bool(calls))
    monkeypatch.setattr(ray, "init", lambda **kw: calls.append(kw))  # records what a real start would be given
    if env is None:
        monkeypatch.delenv("PROMPTFARM_RAY_DASHBOARD", raising=False)
    else:
        monkeypatch.setenv("PROMPTFARM_RAY_DASHBOARD", env)
    cfg = ExperimentConfig()
    cfg.train.num_workers = workers
    assert ensure_ray(cfg) is True
    assert ensure_ray(cfg) is False  # connected already: not started twice
    (kw,) = calls
    assert kw["include_dashboard"] is dashboard
    assert kw["runtime_env"]["env_vars"]["DS_ACCELERATOR"] == "cpu"
