"""Tune-level callback run when a trial ends: free its worker placement group, close its MLflow run with the outcome."""

from __future__ import annotations

from ray.tune import Callback

from pipeline.preflight import redact_uri
from pipeline.records import SearchRef, better, ended_as


class MlflowTrialStatus(Callback):
    """On trial end: tag outcome completed/pruned/failed (+ reason) and terminate the run accordingly."""

    def __init__(self, search: SearchRef, max_steps: int) -> None:
        self.uri, self.exp_id, self.search_id, self.max_steps = search.uri, search.exp_id, search.search_id, max_steps

    def _close(self, trial, outcome: str | None, reason: str | None) -> None:
        from pipeline.train.placement import release

        release(f"{self.search_id}/{trial.trial_id}")
        try:
            self._record(trial, outcome, reason)
        except Exception as e:  # noqa: BLE001  a store that cannot be written must not turn into a TuneError
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
            print(f"[promptfarm] could not record trial {trial.trial_id}'s outcome in the tracking store "
                  f"{redact_uri(self.uri)} ({type(e).__name__}: {first}); the search goes on", flush=True)

    def _record(self, trial, outcome: str | None, reason: str | None) -> None:
        """Tag the trial's MLflow run with its outcome (and reason) and terminate it accordingly."""
        from pipeline.records import ERROR_TAG, OUTCOME_TAG, SEARCH_TAG, TRIAL_TAG
        from pipeline.tracking.runs import find_run, mlflow_client

        client = mlflow_client(self.uri)
        run_id = find_run(client, self.exp_id, {SEARCH_TAG: self.search_id, TRIAL_TAG: trial.trial_id})
        if run_id is None:
            return
        last = trial.last_result or {}
        if outcome is None:
            # Ended normally: by the last result Tune accepted, not the run's MLflow history (a worker runs ahead of
            # ASHA's stop decision and can log one more evaluation than Tune took). No result in this driver
            # (restored after the trial ended): the last step the run logged.
            step = last.get("step")
            if step is None:
                step = max((m.step for m in client.get_metric_history(run_id, "step")), default=0)
            outcome = ended_as(int(step), self.max_steps)
        client.set_tag(run_id, OUTCOME_TAG, outcome)
        if reason:
            client.set_tag(run_id, ERROR_TAG, reason[:5000])
        client.set_terminated(run_id, {"failed": "FAILED", "pruned": "KILLED"}.get(outcome, "FINISHED"))

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        self._close(trial, None, None)

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        reason = None
        if trial.error_file:
            try:
                with open(trial.error_file) as f:
                    lines = [ln for ln in f.read().strip().splitlines() if ln.strip()]
                reason = lines[-1] if lines else None
            except OSError:
                pass
        self._close(trial, "failed", reason or "trial failed")


class ProgressLine(Callback):
    """One terminal line per trial event: trials running / completed / pruned / failed and the best so far.

    Tune's own table calls a pruned trial TERMINATED like a completed one; this line tells them apart.
    """

    def __init__(self, metric: str, mode: str, max_steps: int, echo=None) -> None:
        # echo None = print, looked up when called: Tune pickles its callbacks, and `print` may be swapped by then
        self.metric, self.mode, self.max_steps, self._echo = metric, mode, max_steps, echo
        self.best: tuple[float, str, str] | None = None  # (value, trial id, method)
        self.ended: dict[str, str] = {}  # trial id -> completed / pruned / failed

    def echo(self, line: str) -> None:
        if self._echo is None:
            print(line, flush=True)
        else:
            self._echo(line)

    def line(self, trials, event: str, trial=None, status: str | None = None) -> str:
        # Tune runs these callbacks before it updates the trial's own status: count `trial` as `status` already.
        now = [status if t is trial else t.status for t in trials]
        running, pending = now.count("RUNNING"), now.count("PENDING")
        counts = {k: sum(v == k for v in self.ended.values()) for k in ("completed", "pruned", "failed")}
        best = "-" if self.best is None else f"{self.best[0]:.4f} ({self.best[2]}, trial {self.best[1]})"
        return (f"[promptfarm] {event}: {running} running, {pending} pending, {counts['completed']} completed, "
                f"{counts['pruned']} pruned, {counts['failed']} failed; best {self.metric} {best}")

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        self.echo(self.line(trials, f"trial {trial.trial_id} started", trial, "RUNNING"))

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        value = result.get(self.metric)
        if value is None or not better(value, self.best[0] if self.best else None, self.mode):
            return
        self.best = (float(value), trial.trial_id, str((trial.config or {}).get("method.name", "")) or "-")
        self.echo(self.line(trials, f"trial {trial.trial_id} new best at step {result.get('step', '?')}"))

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        self.ended[trial.trial_id] = ended_as(int((trial.last_result or {}).get("step", 0)), self.max_steps)
        self.echo(self.line(trials, f"trial {trial.trial_id} {self.ended[trial.trial_id]}", trial, "TERMINATED"))

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self.ended[trial.trial_id] = "failed"
        self.echo(self.line(trials, f"trial {trial.trial_id} failed", trial, "ERROR"))
