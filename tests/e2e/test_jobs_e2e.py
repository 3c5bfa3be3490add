"""The jobs/ entry points end to end on the local Ray cluster: train one configuration without registering,
register it later from MLflow alone, then re-evaluate the champion from the config."""

from __future__ import annotations

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow
SMOKE = str(ROOT / "jobs" / "configs" / "smoke.yaml")


def _run(main, argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as e:  # the CLI exits like a process does
        main(argv)
    out = capsys.readouterr().out
    assert e.value.code in (0, None), out
    return out


def test_train_one_then_register_then_evaluate(tmp_path, ray_cluster, monkeypatch, capsys):
    from jobs import evaluate, register, train_one
    from pipeline.tracking.runs import mlflow_client

    monkeypatch.chdir(ROOT)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    common = [f"storage_path={tmp_path / 'ray'}", f"tracking.tracking_uri={uri}", "tracking.model_name=one",
              f"backbone.name_or_path={tmp_path / 'tiny-llama'}", "train.max_steps=6", "train.eval_every=3"]
    out = _run(train_one.main, [SMOKE, *common, "method.lr=0.05", "method.num_tokens=4", "--no-register"], capsys)
    search_id = out.split("search id: ", 1)[1].split()[0]
    client = mlflow_client(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("smoke").experiment_id],
                                filter_string="tags.promptfarm.role = 'trial'")
    # exactly the configured values, nothing sampled, run to the end
    assert run.data.params["method.lr"] == "0.05" and run.data.params["method.num_tokens"] == "4"
    assert run.data.tags["promptfarm.outcome"] == "completed"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val_loss")] == [3, 6]
    assert not client.search_registered_models()

    out = _run(register.main, [SMOKE, *common, "--search-id", search_id], capsys)
    assert "registered one version 1 (champion)" in out
    best = min(m.value for m in client.get_metric_history(run.info.run_id, "val_loss"))
    assert float(client.get_model_version_by_alias("one", "champion").tags["metric_value"]) == best

    out = _run(evaluate.main, [SMOKE, *common], capsys)
    metrics = dict(line.split("\t") for line in out.strip().splitlines() if line.startswith("val_"))
    assert set(metrics) >= {"val_accuracy", "val_loss"}
    tags = client.get_model_version("one", "1").tags
    assert float(tags["eval_validation_loss"]) == pytest.approx(float(metrics["val_loss"]), abs=1e-4)
