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
