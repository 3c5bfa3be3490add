"""What a search records, in one leaf module (imports nothing of tune/ or tracking/, so the search, its callbacks,
the trial driver, registration, the suite and plots all read it without importing each other): the MLflow tags of
searches and trials, the per-trial and per-search summaries, the completed/pruned rule, the best-trial rule, the
metric a search optimises, and `better`, the one "is this an improvement under min/max" comparison."""

from __future__ import annotations

from dataclasses import dataclass, field

from pipeline.config import ExperimentConfig

TRIAL_TAG, SEARCH_TAG, SUITE_TAG = "promptfarm.trial_id", "promptfarm.search_id", "promptfarm.suite_id"
ROLE_TAG = "promptfarm.role"  # MLflow run tag: 'suite', 'search' or 'trial'
STATE_TAG = "promptfarm.state"  # a search run's state: 'running', 'interrupted', 'finished'
OUTCOME_TAG, ERROR_TAG = "promptfarm.outcome", "promptfarm.error"  # a trial run's end: completed/pruned/failed, why
TASK_DIGEST_TAG = "task_digest"  # model version tag: SHA-256 of the task definition its prompt was trained for
@dataclass(frozen=True)
class Registration:
    """What registering a search's best prompt did (`register_best`, `register_search`)."""

    model_name: str
    """Registered model the prompt was offered to, e.g. 'sst2-smollm2-135m-instruct'."""
    version: str | None
    """The version holding it; None when it did not beat the champion."""
    champion: bool
    """Whether that version is now the `champion`."""
    value: float
    """The prompt's value of the search metric."""


@dataclass
class TrialSummary:
    """Outcome of one trial."""

    trial_id: str
    """Ray Tune trial id."""
    params: dict
    """Sampled hyperparameters (dotted config keys)."""
    reports: int
    """Number of evaluations reported (ASHA's time unit)."""
    best: float | None
    """Best value of the search metric over its reports."""
    status: str
    """'completed', 'pruned' or 'failed'."""
    method: str = ""
    """Prompt method of the trial."""
    trainable_params: int | None = None
    """Trainable parameters of the trial's method."""
    steps: int = 0
    """Optimizer steps run before the trial ended."""
    wall_s: float = 0.0
    """Trial wall time in seconds (as Tune measured it)."""
    history: list = field(default_factory=list)
    """(step, metric value) per report."""
    error: str | None = None
    """Failure reason, for failed trials."""


@dataclass
class SearchSummary:
    """What a finished search produced."""

    search_id: str
    """Tune experiment name under storage_path; also tagged on every MLflow run."""
    metric: str
    """Metric optimised."""
    mode: str
    """'max' or 'min'."""
    trials: list[TrialSummary] = field(default_factory=list)
    """One entry per trial."""
    best_trial: str | None = None
    """Trial id of the best result."""
    best_value: float | None = None
    """Best metric value over all trials and reports."""
    best_checkpoint: str | None = None
    """Path (in Ray storage) of the best prompt checkpoint."""
    best_run_id: str | None = None
    """MLflow run of the best trial."""
    registration: Registration | None = None
    """What registering the best prompt did; None when the search did not register."""


@dataclass(frozen=True)
class SearchRef:
    """One search's identity as every process of it needs it (the search driver, each trial, its callbacks):
    plain values, so it pickles into trial processes."""

    search_id: str
    """Tune experiment name; tagged on every MLflow run of the search."""
    uri: str
    """MLflow tracking URI."""
    exp_id: str
    """MLflow experiment id."""
    parent: str
    """MLflow run id of the search (the trials' parent)."""
    metric: str
    """Reported metric optimised, e.g. 'val_accuracy'."""
    mode: str
    """'max' or 'min'."""
    max_reports: int
    """Evaluations a trial that runs to max_steps reports (ASHA's max_t)."""


def ended_as(last_step: int, max_steps: int) -> str:
    """Outcome of a trial that ended without error, the one rule every caller uses: 'completed' once its last
    accepted report is at max_steps, else 'pruned'. By step, not by report count: a trial restored after it ended
    reports its final result once more and nothing else, so its restored history has one report."""
    return "completed" if last_step >= max_steps else "pruned"


def best_trial(trials: list[TrialSummary], mode: str) -> TrialSummary | None:
    """The trial with the best `best` under `mode`; ties go to fewer steps, then the smaller trial id, so a search
    and a suite pick the same trial whatever order the trials come in. None when no trial reported."""
    sign = 1 if mode == "max" else -1
    scored = [t for t in trials if t.best is not None]
    return min(scored, key=lambda t: (-sign * t.best, t.steps, t.trial_id), default=None)


def search_metric(cfg: ExperimentConfig) -> tuple[str, str]:
    """(reported metric key, mode): the configured metric or the task's main one; loss is minimised."""
    name = cfg.search.metric or cfg.data.task.metric
    return f"val_{name}", "min" if name == "loss" else "max"


def better(value: float, best: float | None, mode: str) -> bool:
    """True when `value` improves on `best` (None: nothing yet) under `mode` ('max' or 'min'); ties do not."""
    return best is None or (value > best if mode == "max" else value < best)


def best_of(values: list[float], mode: str) -> float | None:
    """The best of `values` under `mode` (None when empty)."""
    return (max(values) if mode == "max" else min(values)) if values else None
