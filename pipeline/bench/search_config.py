"""Search-benchmark configuration (`promptfarm bench-search`): a base experiment, the learning rates both PT searches
try, and the rows the champions are scored on; YAML + `a.b=c` overrides, validated like every other config.

The base experiment gives the backbone, data, train section (steps, eval interval, batch sizes), the ASHA settings
(search.grace_period, reduction_factor, seed) and, for the methods part, search.methods / method_grid /
num_samples / equal_budget. The PT parts replace its method and space: PT at `num_tokens`, `lr_samples` learning
rates as a grid, one trial each.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pipeline.config import ConfigError, ExperimentConfig, bounds, build_dataclass, load_config, read_yaml

Part = Literal["peer", "ours", "methods"]
PARTS: tuple[str, ...] = ("peer", "ours", "methods")


@dataclass
class SearchBenchConfig:
    experiment: str | None = None
    """Base experiment YAML (backbone, data, train, search's ASHA settings and methods); None: all defaults."""
    overrides: list[str] = field(default_factory=list)
    """`a.b=c` overrides applied to the base experiment."""
    methods_overrides: list[str] = field(default_factory=list)
    """More overrides for the methods part only (after `overrides`), e.g. shorter trials for its 2 x N trials."""
    num_tokens: int = field(default=20, metadata=bounds(1))
    """Prompt length of both PT searches (PEFT's num_virtual_tokens)."""
    lr_samples: int = field(default=8, metadata=bounds(1))
    """Learning rates sampled once and tried by both PT searches, one trial each."""
    lr_range: list[float] = field(default_factory=lambda: [0.03, 10.0])
    """[lo, hi] of the log-uniform lr draw, in embedding units (the peer gets them made absolute)."""
    lr_seed: int = 0
    """Seed of the lr draw."""
    report_file: str | None = None
    """Local data file every champion is scored on (every row; None: the experiment's validation file)."""
    report_limit: int | None = field(default=None, metadata=bounds(1))
    """Score only the first N report rows (None: all)."""
    parts: list[Part] = field(default_factory=lambda: list(PARTS))
    """Parts to run: peer (HF Trainer search), ours (promptfarm's PT search), methods (ASHA against the grid)."""


def load_search_bench_config(path: str | Path | None, overrides: list[str] | None = None) -> SearchBenchConfig:
    """Read YAML `path`, apply overrides, validate the lr range, report file and the derived experiments."""
    cfg = build_dataclass(SearchBenchConfig, read_yaml(path, overrides, "bench-search"), "")
    if len(cfg.lr_range) != 2 or not 0 < cfg.lr_range[0] <= cfg.lr_range[1]:
        raise ConfigError(f"lr_range={cfg.lr_range!r}; expected [lo, hi] with 0 < lo <= hi")
    if cfg.report_file is not None and not Path(cfg.report_file).is_file():
        raise ConfigError(f"report_file={cfg.report_file!r} does not exist; expected the report split's data file")
    for part in ("ours", "methods"):
        experiment(cfg, part)  # every derived experiment is valid before anything runs
    return cfg


def sampled_lrs(cfg: SearchBenchConfig) -> list[float]:
    """`lr_samples` log-uniform draws from `lr_range` with `lr_seed`, in draw order (embedding units)."""
    rng = random.Random(cfg.lr_seed)
    lo, hi = (math.log(v) for v in cfg.lr_range)
    return [float(f"{math.exp(rng.uniform(lo, hi)):.4g}") for _ in range(cfg.lr_samples)]


def experiment(cfg: SearchBenchConfig, part: str, scheduler: str = "asha") -> ExperimentConfig:
    """The experiment of a part: 'ours' is PT at num_tokens over a grid of the sampled lrs (one trial each,
    selected by validation loss, the peer's objective); 'methods' is the base's search under `scheduler`."""
    over = list(cfg.overrides)
    if part == "ours":
        pt = {"name": "pt", "num_tokens": cfg.num_tokens}
        over += [f"method={json.dumps(pt)}", "search.methods={}", "search.default_space=false",
                 "search.num_samples=1", "search.equal_budget=null", "search.method_grid=false",
                 "search.metric=loss", f"search.space={json.dumps({'method.lr': {'grid': sampled_lrs(cfg)}})}"]
    else:
        over += cfg.methods_overrides
    over.append(f"search.scheduler={scheduler}")
    try:
        exp = load_config(cfg.experiment, over)
    except ConfigError as e:
        raise ConfigError(f"bench-search part {part!r}: {e}") from None
    if part == "methods" and not exp.search.methods:
        raise ConfigError("bench-search part 'methods' needs search.methods in the experiment; expected the methods "
                          "ASHA is measured over, e.g. {pt: {}, dept: {}}")
    return exp
