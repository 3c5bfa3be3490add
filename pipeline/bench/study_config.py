"""Method-study configuration (the travel probe and the paired ablation): a base experiment, its overrides and
the arms, each a method section; YAML + `a.b=c` overrides, validated like every other config."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from pipeline import methods
from pipeline.config import ConfigError, ExperimentConfig, bounds, build_dataclass, load_config, read_yaml
from pipeline.schema import plain_name


@dataclass
class StudyArm:
    name: str = field(metadata=plain_name("names the arm's rows and files"))
    """Arm name, e.g. pt-100, dept (a table row)."""
    method: dict = field(default_factory=dict)
    """The arm's method section, e.g. {name: dept, lr: 0.5}; unset keys keep the method's defaults."""
    zero: list[str] = field(default_factory=list)
    """Own parts scored again zeroed after training (the method's `parts`, e.g. [offsets])."""


@dataclass
class StudyConfig:
    experiment: str | None = None
    """Base experiment YAML (backbone, data, train) every arm starts from; None: all defaults."""
    overrides: list[str] = field(default_factory=list)
    """`a.b=c` overrides applied to the base for every arm."""
    arms: list[StudyArm] = field(default_factory=list)
    """The arms, in table order."""
    steps: int | None = field(default=None, metadata=bounds(1))
    """Optimizer steps per arm (None: the base's train.max_steps)."""
    seeds: list[int] = field(default_factory=lambda: [0])
    """Seeds (init and batch order); every arm runs once per seed."""
    report_file: str | None = None
    """Local file of the report split the ablation scores (every row)."""
    report_limit: int | None = field(default=None, metadata=bounds(1))
    """Score only the first N report rows (None: all)."""
    baselines: list[str] = field(default_factory=list)
    """Arms every other arm is compared with by McNemar's test on the same report rows (the ablation's controls)."""
    probe_rows: int = field(default=16, metadata=bounds(1))
    """Training rows the travel probe measures each part's contribution on."""
    probe_every: int = field(default=10, metadata=bounds(1))
    """Steps between the probe's measurements."""
    timing_steps: int = field(default=3, metadata=bounds(1))
    """Steps timed per arm with the prompt run once per batch and once per row (the papers' setting)."""


def load_study_config(path: str | Path | None, overrides: list[str] | None = None) -> StudyConfig:
    """Read YAML `path`, apply overrides, validate every arm's experiment (method keys and parts included)."""
    cfg = build_dataclass(StudyConfig, read_yaml(path, overrides, "study"), "")
    names = [a.name for a in cfg.arms]
    if not names:
        raise ConfigError("arms is empty; expected at least one arm (a name and a method section)")
    dup = [n for n in names if names.count(n) > 1]
    if dup:
        raise ConfigError(f"arms: name {dup[0]!r} appears twice; expected unique arm names (they are table rows)")
    if cfg.report_file is not None and not Path(cfg.report_file).is_file():
        raise ConfigError(f"report_file={cfg.report_file!r} does not exist; expected the report split's data file")
    for b in cfg.baselines:
        if b not in names:
            raise ConfigError(f"baselines: {b!r} is not an arm; expected one of {names}")
    for arm in cfg.arms:
        parts = methods.get(arm_config(cfg, arm).method_name).module_cls.parts
        for part in arm.zero:
            if part not in parts:
                raise ConfigError(f"arms.{arm.name}.zero: {part!r} is not a part of method "
                                  f"{arm.method.get('name')!r}; expected one of {list(parts)}")
    return cfg


def arm_config(cfg: StudyConfig, arm: StudyArm) -> ExperimentConfig:
    """The arm's experiment: the base, the study overrides, the arm's method section and steps."""
    over = [*cfg.overrides, f"method={json.dumps(arm.method)}"]
    if cfg.steps:
        over.append(f"train.max_steps={cfg.steps}")
    try:
        return load_config(cfg.experiment, over)
    except ConfigError as e:
        raise ConfigError(f"arms.{arm.name}: {e}") from None
