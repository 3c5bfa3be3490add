"""The frozen baseline: the backbone with no prompt, scored like every prompt (the 'frozen' row of every table)."""

from __future__ import annotations

import pytest

from pipeline.config import BackboneConfig


def test_frozen_baseline_is_one_command_and_one_mlflow_run(tmp_path, tiny_dirs, monkeypatch):
    """`evaluate CONFIG --frozen`: the backbone with no prompt, same scorer; one run tagged baseline=frozen."""
    import torch
    from typer.testing import CliRunner

    from pipeline.cli import app
    from pipeline.config import DataConfig
    from pipeline.data.builtin import get_task
    from pipeline.data.encode import Encoder, Encoding
    from pipeline.data.sources import load_examples
    from pipeline.evaluation.score import evaluate
    from pipeline.model.backbone import load_backbone
    from pipeline.model.prompted import NoPrompt, PromptedModel
    from pipeline.tracking.runs import mlflow_client
    from tests.conftest import FIXTURES, ROOT

    monkeypatch.chdir(ROOT)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = CliRunner().invoke(app, ["evaluate", "jobs/configs/smoke.yaml", "--frozen", f"tracking.tracking_uri={uri}",
                                      f"backbone.name_or_path={tiny_dirs['llama']}"])
    assert result.exit_code == 0, result.output
    printed = dict(line.split("\t") for line in result.stdout.strip().splitlines() if line.startswith("val_"))
    model, tok, _ = load_backbone(BackboneConfig(name_or_path=str(tiny_dirs["llama"])))
    rows = load_examples(get_task("sst2"), "validation", str(FIXTURES / "sst2_tiny" / "validation.tsv"), None, 0)
    enc = Encoder(tok, False, Encoding(64, 8, DataConfig().decoder_separator))  # the config's default template
    want = evaluate(PromptedModel(model, NoPrompt(), False).eval(), enc, get_task("sst2"),
                    rows, 32, torch.device("cpu"))
    assert float(printed["val_loss"]) == pytest.approx(want["val_loss"], abs=1e-4)
    client = mlflow_client(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("promptfarm-evaluations").experiment_id])
    assert run.data.tags["baseline"] == "frozen"
    assert run.data.metrics["val_accuracy"] == pytest.approx(want["val_accuracy"])
