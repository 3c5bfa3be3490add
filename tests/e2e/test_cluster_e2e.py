"""The cluster path on one machine: a real Ray head (`ray start --head` on loopback) and a real `mlflow server`
(sqlite backend, artifacts proxied by the server). The smoke search is submitted as a Ray job with
`promptfarm submit`, tracks to the server over HTTP, and its champion is pulled and served from the server."""

from __future__ import annotations

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow
def test_submitted_smoke_search_tracks_to_the_mlflow_server_and_its_champion_pulls(
        ray_head, mlflow_server, tmp_path, monkeypatch):
    import mlflow
    import pandas as pd
    from typer.testing import CliRunner

    from pipeline.cli import app
    from pipeline.methods.artifact import read_prompt_meta
    from pipeline.submit import client

    monkeypatch.chdir(ROOT)
    result = CliRunner().invoke(app, [
        "submit", "jobs/configs/smoke.yaml", "search.num_samples=2", "train.max_steps=6", "train.eval_every=3",
        "tracking.experiment=submitted", "--address", ray_head.jobs, "--tracking-uri", mlflow_server])
    assert result.exit_code == 0, result.output[-3000:]
    job_id = result.output.split("submitted ", 1)[1].split()[0]
    assert result.output.rstrip().endswith(f"{job_id} SUCCEEDED")
    assert "registered sst2-tiny-llama version 1 (champion)" in result.output
    assert [j.status.value for j in client(ray_head.jobs).list_jobs() if j.submission_id == job_id] == ["SUCCEEDED"]

    # The runs live on the server (its sqlite + proxied artifacts), not in any local store.
    mlflow_client = mlflow.MlflowClient(mlflow_server, registry_uri=mlflow_server)
    runs = mlflow_client.search_runs([mlflow_client.get_experiment_by_name("submitted").experiment_id])
    assert sorted(r.data.tags.get("promptfarm.role") for r in runs) == ["search", "trial", "trial"]

    out = tmp_path / "prompt"
    pulled = CliRunner().invoke(app, ["pull", "sst2-tiny-llama", "--out", str(out), "--tracking-uri", mlflow_server])
    assert pulled.exit_code == 0, pulled.output
    assert read_prompt_meta(out)["method"] == "pt"

    mlflow.set_tracking_uri(mlflow_server)
    mlflow.set_registry_uri(mlflow_server)
    try:
        model = mlflow.pyfunc.load_model("models:/sst2-tiny-llama@champion")
        labels = model.predict(pd.DataFrame({"text": ["a gripping, funny film", "dull and lifeless"]}))
    finally:
        mlflow.set_tracking_uri(None)
        mlflow.set_registry_uri(None)
    assert len(labels) == 2 and set(labels) <= {"negative", "positive"}
