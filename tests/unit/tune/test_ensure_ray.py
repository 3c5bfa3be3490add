"""The embedded local Ray a search starts: no dashboard unless asked for, and never a second start."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize(("env", "dashboard"), [(None, False), ("0", False), ("1", True)])
def test_embedded_ray_starts_without_the_dashboard_unless_asked(env, dashboard, monkeypatch):
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
    assert ensure_ray(ExperimentConfig()) is True
    assert ensure_ray(ExperimentConfig()) is False  # connected already: not started twice
    (kw,) = calls
    assert kw["include_dashboard"] is dashboard
    assert kw["runtime_env"]["env_vars"]["DS_ACCELERATOR"] == "cpu"
