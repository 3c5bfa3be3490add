"""`promptfarm register --search-id`: a finished search registered from its MLflow runs alone."""

from __future__ import annotations

import pytest

from tests.unit.tracking.test_registry import make_store


@pytest.fixture
def store(tmp_path, backbones):
    """A sqlite MLflow store and a factory of trial runs holding a real PT prompt for the tiny llama."""
    return make_store(tmp_path, backbones)


def test_register_a_finished_search_from_its_mlflow_runs_alone(store, tiny_dirs):
    """`promptfarm register --search-id`: best reported value over every trial's history, only trials with a
    prompt, once per search."""
    from pipeline.config import ExperimentConfig
    from pipeline.records import SEARCH_TAG, Registration
    from pipeline.tune.champion import register_search

    uri, client, make_run = store
    exp = client.get_experiment_by_name("t").experiment_id
    for seed, history in [(1, [6.0, 5.5]), (2, [6.2, 5.2, 5.4]), (3, [5.9])]:
        run_id = make_run(seed)
        client.set_tag(run_id, SEARCH_TAG, "s-1")
        client.set_tag(run_id, "promptfarm.role", "trial")
        client.log_param(run_id, "method", "pt")
        for step, v in enumerate(history):
            client.log_metric(run_id, "val_loss", v, step=step)
    no_prompt = client.create_run(exp, tags={SEARCH_TAG: "s-1", "promptfarm.role": "trial"}).info.run_id
    client.log_metric(no_prompt, "val_loss", 1.0)  # failed before saving a prompt: never registered
    cfg = ExperimentConfig.from_dict({
        "backbone": {"name_or_path": str(tiny_dirs["llama"])}, "data": {"task": "sst2"},
        "search": {"metric": "loss"}, "tracking": {"tracking_uri": uri, "experiment": "t", "model_name": "m"}})
    assert register_search(cfg, "s-1") == Registration("m", "1", True, 5.2)
    mv = client.get_model_version("m", "1")
    assert mv.tags["search_id"] == "s-1" and mv.tags["metric"] == "val_loss" and "4 trials" in mv.description
    assert register_search(cfg, "s-1").version == "1"  # registering again: the same version
    with pytest.raises(LookupError, match="search 'nope' has no trial runs"):
        register_search(cfg, "nope")
    # the config must name what the search trained: an SST-2 search is never filed as the CoLA champion
    raw = cfg.to_dict()
    for section, key, value, says in [("data", "task", "cola", "task 'cola'"),
                                      ("backbone", "name_or_path", "meta-llama/Llama-2-7b-hf",
                                       "task 'sst2' on 'meta-llama/")]:
        other = ExperimentConfig.from_dict({**raw, section: {**raw[section], key: value}})
        with pytest.raises(ValueError, match=rf"search 's-1' trained task 'sst2' on '.*' \(revision None\), but "
                                             rf"the config names {says}.*; expected the config the search ran with"):
            register_search(other, "s-1")
    assert len(client.search_model_versions("name = 'm'")) == 1
