"""Search spaces: single-method keys, the conditional multi-method space, equal-budget mode."""

from __future__ import annotations

import pytest

from pipeline import methods
from pipeline.config import ConfigError, ExperimentConfig, load_config
from pipeline.methods.base import BackboneInfo, Choice, LogUniform, count_trainable
from pipeline.tune.space import METHOD_KEY, search_space, trial_config
from tests.conftest import ROOT

SMOKE = ROOT / "jobs" / "configs" / "smoke.yaml"
T5_BASE = BackboneInfo("t5-base", None, "t5", True, 768, 32128, 12)


def test_single_method_space_is_plain_config_paths():
    cfg = load_config(SMOKE)
    space = search_space(cfg)
    assert set(space) == {"method.lr", "method.num_tokens"}  # PT defaults, overridden by smoke.yaml's space
    assert space["method.num_tokens"] == Choice((4, 8, 16))


def test_unknown_key_in_space_fails_before_ray():
    cfg = load_config(SMOKE, ["search.space={method.rank: {choice: [1, 2]}}"])
    with pytest.raises(ConfigError, match=r"search space for method 'pt': unknown key 'method.rank'"):
        search_space(cfg)


def test_multi_method_space_is_conditional():
    cfg = load_config(SMOKE, ["search.space={}", "search.methods={pt: {num_tokens: 8}, dept: {max_length: 64}}"])
    space = search_space(cfg)
    assert space[METHOD_KEY] == Choice(("pt", "dept"))
    assert "pt:method.lr" in space and "dept:method.lr_lowrank" in space and "method.lr" not in space
    params = {METHOD_KEY: "dept", "pt:method.lr": 0.5, "dept:method.lr": 0.4, "dept:method.lr_lowrank": 1e-3,
              "dept:method.num_tokens": 40, "train.batch_size": 4}
    exp = ExperimentConfig.from_dict(trial_config(cfg.to_dict(), params))
    assert exp.method_name == "dept" and exp.method.lr == 0.4 and exp.method.lr_lowrank == 1e-3
    assert exp.method.max_length == 64 and exp.method.num_tokens == 40 and exp.train.batch_size == 4
    pt = ExperimentConfig.from_dict(trial_config(cfg.to_dict(), {**params, METHOD_KEY: "pt"}))
    assert pt.method_name == "pt" and pt.method.lr == 0.5 and pt.method.num_tokens == 8


def test_unknown_method_in_methods_is_refused():
    with pytest.raises(ValueError, match="unknown prompt method 'prefix'"):
        search_space(load_config(SMOKE, ["search.methods={prefix: {}}"]))


@pytest.mark.parametrize("name", methods.names())
def test_equal_budget_puts_every_method_at_or_under_pt_budget(name):
    cfg = load_config(SMOKE, ["search.space={}", f"search.methods={{{name}: {{}}}}", "search.equal_budget=100"])
    space = search_space(cfg)
    params = {METHOD_KEY: name, **{k: (d.values[0] if isinstance(d, Choice) else d.lo) for k, d in space.items()
                                   if k != METHOD_KEY}}
    exp = ExperimentConfig.from_dict(trial_config(cfg.to_dict(), params))
    module = methods.build(exp.method, T5_BASE)
    assert count_trainable(module) <= 100 * 768
    if name in {"pt", "dept"}:  # exact equal-budget settings of their papers
        assert count_trainable(module) == 100 * 768
    fixed = methods.get(name).module_cls.budget_overrides(100)
    assert not {f"{name}:method.{k}" for k in fixed} & set(space), "budget-fixed keys must leave the space"


def test_optuna_samples_the_conditional_space_within_bounds():
    from pipeline.tune.search import search_algorithm
    from pipeline.tune.space import to_ray

    cfg = load_config(SMOKE, ["search.space={}", "search.methods={pt: {}, dept: {max_length: 64}}",
                              "search.algorithm=optuna", "search.seed=3"])
    space = search_space(cfg)
    alg = search_algorithm(cfg, max_concurrent=2)
    assert alg.set_search_properties("val_loss", "min", to_ray(space))
    first, second, third = (alg.suggest(f"t{i}") for i in range(3))
    assert third is None  # the concurrency cap holds until a trial finishes
    for params in (first, second):
        assert params[METHOD_KEY] in {"pt", "dept"} and set(params) == set(space)
        assert 0.03 <= params["pt:method.lr"] <= 1.0 and params["dept:method.lr"] in (0.3, 0.4)
        ExperimentConfig.from_dict(trial_config(cfg.to_dict(), params))  # a valid trial config


def test_relative_file_choices_become_absolute(monkeypatch):
    monkeypatch.chdir(ROOT)
    cfg = load_config(SMOKE, ["search.space={data.train_file: {choice: [tests/fixtures/sst2_tiny/train.tsv]}}"])
    assert search_space(cfg)["data.train_file"] == Choice((str(ROOT / "tests/fixtures/sst2_tiny/train.tsv"),))


def test_sampled_learning_rates_stay_in_config_units(tiny_dirs):
    """The search samples lrs as written (embedding units); the trial converts them where the backbone loads, so a
    hub id the driver cannot read gets the same rule as a local one (pipeline.methods.units)."""
    cfg = load_config(SMOKE, [f"backbone.name_or_path={tiny_dirs['llama']}", "backbone.init_tiny=null",
                              "search.methods={pt: {}, dept: {}}"])
    space = search_space(cfg)
    assert space["pt:method.lr"] == LogUniform(0.03, 1.0)
    assert space["dept:method.lr"].values == (0.3, 0.4) and space["dept:method.lr_lowrank"].values[0] == 1e-2
    with pytest.raises(ConfigError, match="unknown key 'search.lr_scale'"):
        load_config(SMOKE, ["search.lr_scale=1.0"])


def test_method_grid_gives_every_method_num_samples_trials():
    from collections import Counter

    from ray.tune.search.variant_generator import generate_variants

    from pipeline.tune.space import to_ray

    cfg = load_config(SMOKE, ["search.methods={pt: {}, dept: {max_length: 64}, lamp: {}}", "search.method_grid=true",
                              "search.num_samples=2"])
    space = to_ray(search_space(cfg))
    # Tune expands the grid once per sample: num_samples=2 gives each method exactly 2 trials.
    picked = [spec[METHOD_KEY] for _ in range(2) for _, spec in generate_variants(space)]
    assert Counter(picked) == {"pt": 2, "dept": 2, "lamp": 2}
    with pytest.raises(ConfigError, match="method_grid"):
        search_space(load_config(SMOKE, ["search.methods={pt: {}}", "search.method_grid=true",
                                         "search.algorithm=optuna"]))


def test_train_one_and_a_search_build_the_same_trial_for_the_same_values():
    """A trial's whole config (method lrs in config units, converted at the worker alike) is the same whether a
    search sampled the values or train-one was given them; train-one keeps the method's own sizes."""
    from pipeline.tune.search import one_trial

    overrides = ["search.methods={pt: {}, dept: {max_length: 64}}", "search.equal_budget=100"]
    searched = load_config(SMOKE, overrides)
    params = {METHOD_KEY: "dept", "dept:method.lr": 0.5, "dept:method.lr_lowrank": 3e-4}
    trial = ExperimentConfig.from_dict(trial_config(searched.to_dict(), params))
    assert trial.method.lr == 0.5 and trial.method.lr_lowrank == 3e-4  # config units, converted at the worker
    budget = trial.method.budget_tokens
    one = one_trial(load_config(SMOKE, overrides + [
        f"method={{name: dept, max_length: 64, lr: 0.5, lr_lowrank: 3.0e-4, budget_tokens: {budget}}}"]))
    alone = ExperimentConfig.from_dict(trial_config(one.to_dict(), {}))
    assert alone.method == trial.method and alone.train == trial.train and alone.data == trial.data
    assert alone.search.equal_budget is None  # PT's num_tokens=60 would not be resized to 100
    pt60 = one_trial(load_config(SMOKE, overrides + ["method={name: pt, num_tokens: 60}"]))
    assert ExperimentConfig.from_dict(trial_config(pt60.to_dict(), {})).method.num_tokens == 60


def test_a_grid_key_tries_every_value_once_per_sample_and_refuses_bad_lists():
    from ray.tune.search.variant_generator import generate_variants

    from pipeline.tune.space import to_ray

    cfg = load_config(SMOKE, ["search.space={method.lr: {grid: [0.1, 0.3, 1.0]}}", "search.num_samples=1"])
    space = to_ray(search_space(cfg))
    assert sorted(spec["method.lr"] for _, spec in generate_variants(space)) == [0.1, 0.3, 1.0]
    assert "method.num_tokens" in space  # the method's other keys are still sampled beside the grid
    with pytest.raises(ConfigError, match=r"search.space.method.lr=\{'grid': \[\]\}: grid needs a non-empty list"):
        search_space(load_config(SMOKE, ["search.space={method.lr: {grid: []}}"]))
    with pytest.raises(ConfigError, match="search.space.method.lr is a grid; expected search.algorithm='random'"):
        search_space(load_config(SMOKE, ["search.space={method.lr: {grid: [0.1]}}", "search.algorithm=optuna"]))


def test_fifo_scheduler_runs_every_trial_to_its_budget_and_asha_is_the_default():
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    from pipeline.tune.search import scheduler

    asha = scheduler(load_config(SMOKE, ["search.grace_period=9"]), max_reports=4)
    assert type(asha) is ASHAScheduler and [r for r, _ in asha._brackets[0]._rungs] == [4]  # capped at 4 reports
    assert type(scheduler(load_config(SMOKE, ["search.scheduler=fifo"]), 4)) is FIFOScheduler
    with pytest.raises(ConfigError, match="search.scheduler"):
        load_config(SMOKE, ["search.scheduler=hyperband"])
