"""What a search records, in one leaf module (imports nothing of tune/ or tracking/, so the search, its callbacks,
the trial driver, registration and plots all read it without importing each other): the MLflow tags of searches and
trials, the per-trial and per-search summaries, the completed/pruned rule, the metric a search optimises, and
`better`, the one "is this an improvement under min/max" comparison."""

from __future__ import annotations

from dataclasses import dataclass, field

from pipeline.config import ExperimentConfig

TRIAL_TAG, SEARCH_TAG = "promptfarm.trial_id", "promptfarm.search_id"
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
    model_name: str | None = None
    """Registered model the best prompt was registered under."""
    version: str | None = None
    """Registered model version."""
    champion: bool = False
    """Whether the version became the `champion`."""


def ended_as(reports: int, max_reports: int) -> str:
    """Outcome of a trial that ended without error: 'completed' once it made all its reports, else 'pruned'."""
    return "completed" if reports >= max_reports else "pruned"


def search_metric(cfg: ExperimentConfig) -> tuple[str, str]:
    """(reported metric key, mode): the configured metric or the task's main one; loss is minimised."""
    from pipeline.data.tasks import get_task

    name = cfg.search.metric or get_task(cfg.data.task).metric
    return f"val_{name}", "min" if name == "loss" else "max"


def better(value: float, best: float | None, mode: str) -> bool:
    """True when `value` improves on `best` (None: nothing yet) under `mode` ('max' or 'min'); ties do not."""
    return best is None or (value > best if mode == "max" else value < best)


def best_of(values: list[float], mode: str) -> float | None:
    """The best of `values` under `mode` (None when empty)."""
    return (max(values) if mode == "max" else min(values)) if values else None
