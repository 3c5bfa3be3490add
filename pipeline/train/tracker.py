"""Rank 0's MLflow logging of one trial into the trial's run (params, metrics, best-so-far prompt)."""

from __future__ import annotations

import time
from pathlib import Path

from pipeline.artifact import CONFIG_FILE, TENSORS_FILE
from pipeline.train.session import LoopContext


class TrialTracker:
    """Rank-0 MLflow logging into the trial's run, by explicit run id (no active-run global state).

    Steps up to the last one the run already holds for the search metric are not logged again: a trial restarted
    from an earlier checkpoint than its last log (killed between logging a report and persisting its checkpoint)
    re-trains those steps, exactly, and its run keeps one value per step."""

    def __init__(self, ctx: LoopContext) -> None:
        self.client, self.logged = None, 0
        if ctx.tracking_uri and ctx.run_id:
            from pipeline.tracking.runs import mlflow_client

            self.client, self.run_id = mlflow_client(ctx.tracking_uri), ctx.run_id
            self.logged = max((m.step for m in self.client.get_metric_history(ctx.run_id, ctx.metric)), default=0)

    def log_params(self, params: dict) -> None:
        """Log params once per trial run (a restarted worker group logs the same values again, which MLflow allows)."""
        if self.client is None:
            return
        from mlflow.entities import Param

        self.client.log_batch(self.run_id, params=[Param(k, f"{v:.6g}") for k, v in params.items()])

    def log_metrics(self, metrics: dict, step: int) -> None:
        if self.client is None or step <= self.logged:
            return
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, float(v), now, step) for k, v in metrics.items()])

    def log(self, metrics: dict, step: int, prompt_dir: str | None) -> None:
        if self.client is None:
            return
        self.log_metrics(metrics, step)
        if prompt_dir is not None:  # best-so-far prompt of this trial: the two prompt files, not the optimizer
            for name in (CONFIG_FILE, TENSORS_FILE):
                self.client.log_artifact(self.run_id, str(Path(prompt_dir) / name), artifact_path="prompt")
