"""The trial tracker's step-skip rule: a trial restarted from a checkpoint older than its last log re-trains those
steps exactly and logs them once, so its run keeps one value per step."""

from __future__ import annotations

from pipeline.train.session import LoopContext
from pipeline.train.tracker import TrialTracker


def test_steps_the_run_already_holds_are_not_logged_again(tmp_path):
    from pipeline.tracking.runs import mlflow_client

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow_client(uri)
    exp = client.create_experiment("t", artifact_location=(tmp_path / "art").as_uri())  # not ./mlruns
    run_id = client.create_run(exp).info.run_id
    first = TrialTracker(LoopContext("val_loss", "min", uri, run_id))
    for step, loss in [(10, 3.0), (20, 2.0), (30, 1.5)]:
        first.log_metrics({"val_loss": loss, "train_loss": loss + 1}, step)
    # killed after logging step 30 but before persisting its checkpoint: the restart resumes at step 20
    again = TrialTracker(LoopContext("val_loss", "min", uri, run_id))
    assert again.logged == 30
    for step, loss in [(30, 1.5), (40, 1.2)]:
        again.log_metrics({"val_loss": loss, "train_loss": loss + 1}, step)
    history = [(m.step, m.value) for m in client.get_metric_history(run_id, "val_loss")]
    assert sorted(history) == [(10, 3.0), (20, 2.0), (30, 1.5), (40, 1.2)]  # step 30 once, step 40 added
    assert TrialTracker(LoopContext("val_loss", "min")).client is None  # no store: nothing logged, nothing read
