"""Model Registry: champion only on improvement, idempotent per search result, concurrent searches, pyfunc, pull."""

from __future__ import annotations

import threading

import pytest
import torch

from pipeline import methods
from pipeline.artifact import TENSORS_FILE, save_prompt
from pipeline.methods.pt import PTConfig
from pipeline.model.backbone import embedding_rows
from pipeline.tracking.registry import CHAMPION, pull, register_prompt


@pytest.fixture
def store(tmp_path, backbones):
    """A sqlite MLflow store and a factory of trial runs holding a real PT prompt for the tiny llama."""
    return make_store(tmp_path, backbones)


def make_store(tmp_path, backbones):
    """(tracking URI, client, make_run(seed) -> run id) over a fresh sqlite store in `tmp_path`."""
    from pipeline.tracking.runs import mlflow_client

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow_client(uri)
    exp = client.create_experiment("t", artifact_location=(tmp_path / "art").as_uri())
    model, _, info = backbones["llama"]

    def make_run(seed: int) -> str:
        cfg = PTConfig(num_tokens=3)
        method = methods.build(cfg, info, embedding_rows(model), seed=seed)
        d = tmp_path / f"prompt-{seed}"
        save_prompt(d, cfg, method.state_dict(), info, "sst2")
        run_id = client.create_run(exp).info.run_id
        client.log_artifacts(run_id, str(d), "prompt")
        client.set_terminated(run_id, "KILLED")
        return run_id

    return uri, client, make_run


def _reg(client, run_id, value, search_id):
    client.log_metric(run_id, "val_accuracy", value)  # as a trial does: the registry compares logged values only
    return register_prompt(client, "sst2-tiny", run_id, "val_accuracy", value, "max",
                           {"search_id": search_id, "method": "pt"}, f"search {search_id}")


def test_champion_moves_only_on_improvement_and_once_per_search(store):
    _, client, make_run = store
    assert _reg(client, make_run(1), 0.6, "s1") == ("1", True)
    assert _reg(client, make_run(2), 0.5, "s2") == (None, False)  # worse: not registered at all
    third = make_run(3)
    assert _reg(client, third, 0.7, "s3") == ("2", True)
    assert _reg(client, third, 0.7, "s3") == ("2", True)  # resumed search, same best: no duplicate
    versions = client.search_model_versions("name = 'sst2-tiny'")
    assert sorted(str(v.version) for v in versions) == ["1", "2"]
    assert client.get_model_version_by_alias("sst2-tiny", CHAMPION).tags["metric_value"] == "0.7"
    # resumed and trained further: the same run's later, better prompt becomes a version and the champion
    assert _reg(client, third, 0.8, "s3") == ("3", True)
    assert client.get_model_version_by_alias("sst2-tiny", CHAMPION).tags["metric_value"] == "0.8"


def test_logging_the_model_keeps_a_pruned_trials_status(store):
    _, client, make_run = store
    run_id = make_run(1)
    _reg(client, run_id, 0.6, "s1")
    assert client.get_run(run_id).info.status == "KILLED"


def test_concurrent_searches_both_recorded_better_is_champion(store):
    _, client, make_run = store
    _reg(client, make_run(1), 0.5, "s0")
    runs = {0.8: make_run(2), 0.9: make_run(3)}
    results = {}
    # Force the race: neither search creates its version before both have read the champion (0.5) and decided to
    # register, so both then race to move the alias.
    barrier, create = threading.Barrier(2, timeout=120), client.create_model_version

    def create_together(*args, **kwargs):
        barrier.wait()
        return create(*args, **kwargs)

    client.create_model_version = create_together

    def go(value):
        results[value] = _reg(client, runs[value], value, f"s{value}")

    threads = [threading.Thread(target=go, args=(v,)) for v in runs]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert all(results[v][0] is not None for v in runs)  # both interleaved searches recorded a version
    assert barrier.n_waiting == 0 and not barrier.broken
    champ = client.get_model_version_by_alias("sst2-tiny", CHAMPION)
    assert str(champ.version) == results[0.9][0] and champ.tags["metric_value"] == "0.9"


def test_pyfunc_predicts_dataframe_and_pull_gets_plain_files(store, tmp_path):
    import mlflow
    import pandas as pd
    from safetensors.torch import load_file

    from pipeline.evaluation.predictor import Predictor

    uri, client, make_run = store
    run_id = make_run(4)
    _reg(client, run_id, 0.6, "s1")
    out = pull("sst2-tiny", tmp_path / "pulled", tracking_uri=uri)
    assert sorted(p.name for p in out.iterdir()) == ["prompt.safetensors", "prompt_config.json"]
    original = load_file(str(tmp_path / "prompt-4" / TENSORS_FILE))
    assert torch.equal(load_file(str(out / TENSORS_FILE))["prompt"], original["prompt"])

    texts = ["a gripping , funny film", "a dull mess", "fine"]
    mlflow.set_registry_uri(uri)
    model = mlflow.pyfunc.load_model("models:/sst2-tiny@champion")
    assert list(model.predict(pd.DataFrame({"text": texts}))) == Predictor.load(out).predict(texts)


def test_pull_unknown_model_fails_without_touching_out(store, tmp_path):
    uri, _, _ = store
    out = tmp_path / "keep"
    out.mkdir()
    (out / "prompt_config.json").write_text("{}")
    with pytest.raises(Exception, match="nosuch"):
        pull("nosuch", out, tracking_uri=uri)
    assert (out / "prompt_config.json").read_text() == "{}"


def test_two_definitions_of_one_task_never_register_under_one_name(store):
    """A task name is the registry's: a search of an edited definition (another template, label words, ...) under the
    same name is refused before anything is written, and the same definition registers as usual."""
    from pipeline.data.builtin import get_task
    from pipeline.records import TASK_DIGEST_TAG

    _, client, make_run = store
    sst2 = get_task("sst2")
    edited = type(sst2)(**{**sst2.to_dict(), "template": "Review: {sentence}"})

    def reg(run_id, value, search_id, task):
        client.log_metric(run_id, "val_accuracy", value)
        return register_prompt(client, "sst2-tiny", run_id, "val_accuracy", value, "max",
                               {"search_id": search_id, "task": "sst2", TASK_DIGEST_TAG: task.digest()}, "")

    assert reg(make_run(1), 0.6, "s1", sst2) == ("1", True)
    with pytest.raises(ValueError, match=r"^registered model 'sst2-tiny' holds prompts for another definition of task "
                                         r"'sst2' \(version 1: task digest [0-9a-f]{12}, this search: [0-9a-f]{12}\); "
                                         r"expected the same definition, or another task name or tracking.model_name"):
        reg(make_run(2), 0.9, "s2", edited)
    assert len(client.search_model_versions("name = 'sst2-tiny'")) == 1
    assert reg(make_run(3), 0.7, "s3", sst2) == ("2", True)


def test_registering_and_pulling_print_no_progress_bars_or_pyfunc_advice(store, tmp_path, capfd, recwarn):
    """A first run of the main job prints promptfarm's lines only: no artifact download bars, no MLflow advice to
    type-hint the pyfunc's predict."""
    uri, client, make_run = store
    _reg(client, make_run(1), 0.6, "s1")
    pull("sst2-tiny", tmp_path / "p", tracking_uri=uri)
    out, err = capfd.readouterr()
    assert "Downloading artifacts" not in out + err and "%|" not in err
    assert "Failed to infer model signature" not in out + err
    assert not [str(w.message)[:120] for w in recwarn if "Add type hints" in str(w.message)]


def test_a_new_store_and_a_new_tiny_model_print_nothing(tmp_path, capfd):
    """The README's first run creates both: MLflow's table-creation INFO lines and transformers' "Writing model
    shards" bar were the first things it printed."""
    from pipeline.model.tiny import write_tiny_model
    from pipeline.tracking.runs import mlflow_client

    mlflow_client(f"sqlite:///{tmp_path / 'new.db'}").search_experiments()
    write_tiny_model("llama", tmp_path / "tm")
    out, err = capfd.readouterr()
    assert "Creating initial MLflow database tables" not in out + err and "Writing model shards" not in out + err
    assert (tmp_path / "tm" / "config.json").is_file()
