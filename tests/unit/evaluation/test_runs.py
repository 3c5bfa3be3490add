"""`promptfarm evaluate NAME`: the champion scored, the score logged as a run and tagged on the version."""

from __future__ import annotations

import pytest

from pipeline.tracking.registry import pull
from tests.unit.tracking.test_registry import _reg, make_store


@pytest.fixture
def store(tmp_path, backbones):
    """A sqlite MLflow store and a factory of trial runs holding a real PT prompt for the tiny llama."""
    return make_store(tmp_path, backbones)


def test_evaluate_registered_logs_run_and_tags_version(store, tmp_path):
    from pipeline.evaluation.predictor import Predictor
    from pipeline.evaluation.runs import evaluate_registered
    from tests.conftest import FIXTURES

    uri, client, make_run = store
    _reg(client, make_run(5), 0.6, "s1")
    data = str(FIXTURES / "sst2_tiny" / "validation.tsv")
    metrics = evaluate_registered("sst2-tiny", "champion", uri, "validation", data)
    expected = Predictor.load(pull("sst2-tiny", tmp_path / "p", tracking_uri=uri)).evaluate("validation", data)
    assert metrics == pytest.approx(expected) and set(metrics) == {"val_accuracy", "val_loss"}
    version = client.get_model_version("sst2-tiny", "1")
    assert float(version.tags["eval_validation_accuracy"]) == pytest.approx(metrics["val_accuracy"])
    runs = client.search_runs([client.get_experiment_by_name("promptfarm-evaluations").experiment_id])
    assert len(runs) == 1 and runs[0].data.metrics["val_accuracy"] == pytest.approx(metrics["val_accuracy"])


def test_evaluate_name_whose_backbone_is_an_uncached_hub_id_offline_is_one_line_at_once(tmp_path, backbones,
                                                                                        monkeypatch):
    """The pulled prompt records a hub id this machine never cached: the pre-flight probe answers before ~25 s of
    hub retries and a dozen lines; nothing is logged."""
    import dataclasses

    from typer.testing import CliRunner

    from pipeline import methods
    from pipeline.artifact import save_prompt
    from pipeline.cli import app
    from pipeline.methods.pt import PTConfig
    from pipeline.tracking.runs import mlflow_client
    from tests.unit.tracking.test_registry import _reg

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow_client(uri)
    exp = client.create_experiment("t", artifact_location=(tmp_path / "art").as_uri())
    _, _, info = backbones["llama"]
    cfg = PTConfig(num_tokens=3)
    hub = dataclasses.replace(info, name_or_path="some-org/not-in-the-cache")
    save_prompt(tmp_path / "p", cfg, methods.build(cfg, hub).state_dict(), hub, "sst2")
    run_id = client.create_run(exp).info.run_id
    client.log_artifacts(run_id, str(tmp_path / "p"), "prompt")
    _reg(client, run_id, 0.6, "s1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    result = CliRunner().invoke(app, ["evaluate", "sst2-tiny", "--tracking-uri", uri])
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert result.exit_code == 2 and len(lines) == 1, result.stderr
    assert lines[0].startswith("error: could not evaluate sst2-tiny@champion: backbone 'some-org/not-in-the-cache' "
                               "is not a local directory and not in the Hugging Face cache"), lines[0]
    assert client.get_experiment_by_name("promptfarm-evaluations") is None
