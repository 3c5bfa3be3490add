"""Suite configuration: a base experiment shared by every task, the tasks (data, selection and report splits) and
the methods with their budget. Every task's ExperimentConfig is built and validated at load, before Ray starts."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.config import ConfigError, ExperimentConfig, bounds, build_dataclass, read_yaml
from pipeline.schema import apply_overrides, plain_name


@dataclass
class SuiteTask:
    name: str = field(metadata=plain_name("ends the task search's id, a folder under storage_path"))
    """Column name in the table (one plain name); unique within the suite; also the task search's id suffix."""
    data: dict[str, Any] = field(default_factory=dict)
    """The task's `data` section (task, train_file, validation_file = selection split, max_eval_samples, ...)."""
    report_file: str | None = None
    """Local file of the report split (None: `report_split` of the task's hub dataset)."""
    report_split: str = "validation"
    """Split the table reports (the hub split name, or the split the report file holds)."""
    report_limit: int | None = field(default=None, metadata=bounds(1))
    """Score only the first N report examples (None: all)."""
    overrides: list[str] = field(default_factory=list)
    """Experiment overrides for this task only, e.g. ['train.max_steps=40']."""


@dataclass
class SuiteConfig:
    name: str = field(default="suite", metadata=plain_name("begins the suite id, a folder under storage_path"))
    """Suite name (one plain name): the suite id's prefix and (with tracking_experiment unset) its MLflow experiment."""
    experiment: str | None = None
    """Base experiment YAML every task starts from (backbone, train, search, tracking); None: all defaults."""
    overrides: list[str] = field(default_factory=list)
    """Overrides of the base experiment for every task (key.path=value)."""
    methods: dict[str, dict] | None = None
    """Methods of every task's search with their fixed values, e.g. {pt: {}, dept: {max_length: 64}} (None: the
    base experiment's search.methods)."""
    budget: int | None = field(default=None, metadata=bounds(1))
    """Equal parameter budget in PT tokens (search.equal_budget) for every method (None: the base's)."""
    tasks: list[SuiteTask] = field(default_factory=list)
    """Tasks, one ASHA search each; table columns in this order."""
    frozen: bool = True
    """Add the frozen backbone (no prompt) as a row, scored on every report split."""
    concurrent: int = field(default=0, metadata=bounds(0))
    """Task searches at once (0: as many as the cluster runs trials of one task side by side, at least 1)."""
    tracking_experiment: str | None = None
    """MLflow experiment of the suite run and every task search (None: the suite name)."""


def load_suite_config(path: str | Path | None, overrides: list[str] | None = None) -> SuiteConfig:
    """Read YAML `path`, apply `a.b=c` overrides, validate the suite and every task's experiment config."""
    cfg = build_dataclass(SuiteConfig, read_yaml(path, overrides, "suite"), "")
    if not cfg.tasks:
        raise ConfigError("tasks=[] is empty; expected at least one task (name, data, report split)")
    names = [t.name for t in cfg.tasks]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(f"tasks: name {dup[0]!r} appears twice; expected unique task names (they are table columns)")
    for task in cfg.tasks:
        task_config(cfg, task)  # fail now, in one line, on a bad key or value of any task
    return cfg


def task_config(cfg: SuiteConfig, task: SuiteTask) -> ExperimentConfig:
    """The task's experiment: the base, the suite overrides, the task's data, methods and budget, its overrides."""
    raw = read_yaml(cfg.experiment, cfg.overrides)
    raw["name"] = f"{cfg.name}-{task.name}"
    raw["data"] = {**(raw.get("data") or {}), **task.data}
    search = raw.setdefault("search", {})
    if cfg.methods is not None:
        search["methods"] = cfg.methods
    if cfg.budget is not None:
        search["equal_budget"] = cfg.budget
    tracking = raw.setdefault("tracking", {})
    tracking["experiment"] = cfg.tracking_experiment or cfg.name
    tracking["model_name"] = None  # each task registers under its own usual name, unless its overrides say
    try:
        return ExperimentConfig.from_dict(apply_overrides(raw, task.overrides))
    except ConfigError as e:
        raise ConfigError(f"task {task.name!r}: {e}") from None


def check_suite(cfg: SuiteConfig) -> None:
    """Pre-flight of every task before MLflow or Ray: its data files, search space, tracking store and backbone
    (pipeline.preflight.check_run) and its report file, each failure one line naming the task. Without it a missing
    report file was found after that task's whole search."""
    from pipeline.preflight import check_data_file, check_run, task_labels
    from pipeline.tune.cluster import DRIVER_CPU
    from pipeline.tune.space import search_space

    for task in cfg.tasks:
        exp = task_config(cfg, task)
        try:
            check_run(exp, DRIVER_CPU)
            search_space(exp)
            if task.report_file:
                check_data_file(task_labels(exp), "report_file", task.report_file, task.report_split)
        except ConfigError as e:
            raise ConfigError(f"suite task {task.name!r}: {e}") from None
