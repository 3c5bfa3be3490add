"""Benchmark configuration: YAML + `a.b=c` overrides -> a validated `BenchConfig` (same rules as experiments).

Unknown keys, wrong types and out-of-range values fail with one line naming the key; per-method overrides are
validated against each method's own config dataclass from the registry.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pipeline import methods
from pipeline.config import BackboneConfig, ConfigError, bounds, build_dataclass, read_yaml


@dataclass
class BenchConfig:
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    """Frozen backbone every row runs on (name_or_path, dtype, init_tiny for a tiny random model)."""
    batch_size: int = field(default=8, metadata=bounds(1))
    """Sequences per step, identical for every row."""
    seq_len: int = field(default=64, metadata=bounds(1))
    """Input length in tokens, excluding the virtual tokens a method adds."""
    target_len: int = field(default=8, metadata=bounds(1))
    """Decoder length for encoder-decoder backbones (T5); unused by decoder-only ones."""
    warmup: int = field(default=3, metadata=bounds(1))
    """Untimed steps per row first (optimizer state, allocator and kernel caches); memory is measured here."""
    steps: int = field(default=20, metadata=bounds(1))
    """Timed steps per row; tables report the median."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """'auto': cuda when available, else cpu."""
    num_threads: int | None = field(default=None, metadata=bounds(1))
    """torch intra-op threads on CPU (None: torch's default)."""
    methods: list[str] | None = None
    """Registered methods to benchmark (None: all of them)."""
    method_overrides: dict[str, dict] = field(default_factory=dict)
    """Per-method config values on top of the defaults, e.g. {dept: {max_length: 64}}."""
    equal_budget: int | None = field(default=None, metadata=bounds(1))
    """Put every method at PT's budget of this many tokens via its budget_overrides (None: each method's defaults,
    which already are the papers' equal-parameter settings at PT-100)."""
    reference: str = "pt"
    """Method the PEFT row mirrors (same number of virtual tokens) and the shorter-prompt target compares with."""
    quantized: list[Literal["nf4", "fp4", "int8"]] = field(default_factory=list)
    """Also load the backbone with each of these quantisations and time its frozen backbone and the reference method
    over it (rows 'NAME@Q', timed round-robin with the full-precision rows; weight memory per quantisation)."""
    include_peft: bool = True
    """Add Hugging Face PEFT's PromptTuning at the reference's prompt length as an external baseline."""
    seed: int = 0
    """Seed of the synthetic token batch and of every method's init."""
    overhead_target_pct: float = field(default=3.0, metadata=bounds(0.0))
    """Target for a method's own overhead, in % of its step (reported, never asserted)."""
    out_dir: str = "./.promptfarm/bench"
    """Directory receiving bench.md and bench.json."""
    tracking_uri: str | None = None
    """MLflow tracking URI; None: $MLFLOW_TRACKING_URI, and no MLflow logging when that is unset too."""
    experiment: str = "bench"
    """MLflow experiment of the benchmark runs."""


def load_bench_config(path: str | Path | None, overrides: list[str] | None = None) -> BenchConfig:
    """Read YAML `path` (None: all defaults), apply `a.b=c` overrides, validate (methods included)."""
    cfg = build_dataclass(BenchConfig, read_yaml(path, overrides, "benchmark"), "")
    method_configs(cfg)  # fail now, in one line, on an unknown method or method key
    return cfg


def _known(name: str, key: str) -> None:
    if name not in methods.names():
        raise ConfigError(f"{key}={name!r} is not a registered prompt method; expected one of: "
                          f"{', '.join(methods.names())}")


def method_config(cfg: BenchConfig, name: str) -> Any:
    """The config dataclass of method `name`: defaults, then the equal-budget values, then the overrides."""
    from pipeline.methods import budget_values

    values: dict[str, Any] = budget_values(name, cfg.equal_budget, "equal_budget")
    over = cfg.method_overrides.get(name) or {}
    if not isinstance(over, dict):
        raise ConfigError(f"method_overrides.{name}={over!r} has the wrong type; expected a mapping")
    values.update(over)
    return build_dataclass(methods.config_class(name), values, f"method_overrides.{name}.")


def method_configs(cfg: BenchConfig) -> dict[str, Any]:
    """{name: config} of the benchmarked methods (registry order unless `methods` lists them); checks every name."""
    for name in cfg.methods or []:
        _known(name, "methods")
    for name in cfg.method_overrides:
        _known(name, "method_overrides")
    _known(cfg.reference, "reference")
    method_config(cfg, cfg.reference)  # the PEFT row's length comes from it even when it is not benchmarked
    names = cfg.methods if cfg.methods is not None else methods.names()
    return {name: method_config(cfg, name) for name in dict.fromkeys(names)}
