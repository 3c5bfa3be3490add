"""A user's own tasks end to end on the real local Ray cluster: a classification task (labels from the data) and a
generation task (several references per input) are searched, registered, pulled in a fresh process, and then
`predict`, the MLflow pyfunc and `Predictor.evaluate` reproduce the trial with no config: the same predictions
as each other and the trial's own validation scores."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from pipeline.artifact import CONFIG_FILE
from pipeline.config import load_config
from tests.conftest import FIXTURES
from tests.e2e.conftest import SMOKE

pytestmark = pytest.mark.slow

TASKS = {  # task fixture dir -> (train file, validation file, a few inputs to predict)
    "intents_tiny": ("train.csv", "validation.csv", ["my card has not come", "what rate is it today"]),
    "d2t_tiny": ("train.jsonl", "validation.jsonl", ["name[Aromi], eatType[pub]", "name[Cotto]"]),
}


def _cli(*args: str, cwd, stdin: str | None = None) -> str:
    out = subprocess.run([sys.executable, "-m", "pipeline.cli", *args], cwd=cwd, capture_output=True, text=True,
                         timeout=300, input=stdin, env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


@pytest.mark.parametrize("fixture", list(TASKS))
def test_a_user_task_is_searched_registered_pulled_and_reproduced(ray_cluster, tmp_path, fixture, monkeypatch):
    import mlflow
    import pandas as pd

    from pipeline.evaluation.predictor import Predictor
    from pipeline.tune.search import run_search

    train, val, texts = TASKS[fixture]
    data = FIXTURES / fixture
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = load_config(SMOKE, [
        f"storage_path={tmp_path / 'ray'}", f"tracking.tracking_uri={uri}", f"backbone.name_or_path={tmp_path / 'm'}",
        f"name=user-{fixture}", f"data.task={data / 'task.yaml'}", f"data.train_file={data / train}",
        f"data.validation_file={data / val}", "data.max_target_length=48", "search.metric=null",
        "search.num_samples=1", "search.default_space=false", "search.space={}", "train.max_steps=12",
        "train.eval_every=6"])
    monkeypatch.chdir(tmp_path)
    s = run_search(cfg)
    assert s.registration.champion and s.registration.model_name == f"{cfg.data.task.name}-m"

    pulled = tmp_path / "pulled"
    _cli("pull", s.registration.model_name, "--out", str(pulled), "--tracking-uri", uri, cwd=tmp_path)
    meta = json.loads((pulled / CONFIG_FILE).read_text())
    assert meta["task"]["name"] == cfg.data.task.name and meta["task"]["template"] == cfg.data.task.template
    predictor = Predictor.load(pulled)
    # the trial's own validation scores at the registered step, from the artifact alone (no config)
    got = predictor.evaluate("validation", str(data / val))
    assert set(got) == {f"val_{m}" for m in cfg.data.task.metrics} | {"val_loss"}
    assert got == pytest.approx({k: meta["metrics"][k] for k in got}, abs=1e-6)

    expected = predictor.predict(texts)
    if cfg.data.task.is_classification:
        assert all(p in predictor.task.label_words for p in expected)
        assert "card arrival" in predictor.task.label_words  # the readable default of 'card_arrival'
    lines = _cli("predict", str(pulled), *texts, cwd=tmp_path).splitlines()
    assert [ln.split("\t")[0] for ln in lines] == [p.replace("\n", " ") for p in expected]
    from_stdin = _cli("predict", str(pulled), cwd=tmp_path, stdin="\n".join(texts) + "\n").splitlines()
    assert from_stdin == lines
    from_file = _cli("predict", str(pulled), "--file", str(data / val), cwd=tmp_path).splitlines()
    assert len(from_file) == len((data / val).read_text().strip().splitlines()) - (val.endswith(".csv"))

    mlflow.set_tracking_uri(uri)
    model = mlflow.pyfunc.load_model(f"models:/{s.registration.model_name}@champion")
    field = predictor.task.text_fields[0]
    assert list(model.predict(pd.DataFrame({field: texts}))) == expected
