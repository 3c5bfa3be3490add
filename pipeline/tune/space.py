"""Search spaces: methods declare Ray-free specs (pipeline.methods.base); this turns them into ray.tune domains.

One method: keys are dotted config paths ('method.lr'). Several methods (`search.methods`) in one Tuner: the
space is conditional — 'method.name' is sampled first and each method's own keys are namespaced as
'dept:method.lr'; `trial_config` keeps only the sampled method's keys, so a trial never sees another method's
parameters. With `search.equal_budget`, each method's `budget_overrides(tokens)` fixes its size to PT's budget
at that many tokens and those keys leave its space.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from pipeline import methods
from pipeline.config import ConfigError, ExperimentConfig, absolute_path, apply_overrides
from pipeline.methods.base import Choice, Dist, LogUniform, Uniform

METHOD_KEY = "method.name"


@dataclass(frozen=True)
class Grid:
    """Every one of `values`, each with num_samples trials (Tune's grid_search): method.name under
    search.method_grid, or a search.space key written {grid: [...]}; several grids multiply."""

    values: tuple


_YAML_KINDS = {"choice": lambda v: Choice(tuple(v)), "loguniform": lambda v: LogUniform(*v),
               "uniform": lambda v: Uniform(*v), "grid": lambda v: Grid(tuple(v))}


def parse_dist(key: str, raw: Any) -> Dist:
    """YAML form {'loguniform': [lo, hi]} / {'uniform': [lo, hi]} / {'choice': [...]} -> a Dist."""
    if isinstance(raw, Choice | LogUniform | Uniform | Grid):
        return raw
    if not (isinstance(raw, dict) and len(raw) == 1 and next(iter(raw)) in _YAML_KINDS):
        raise ConfigError(f"search.space.{key}={raw!r} is not a distribution; expected {{choice: [...]}}, "
                          f"{{grid: [...]}}, {{loguniform: [lo, hi]}} or {{uniform: [lo, hi]}}")
    kind, value = next(iter(raw.items()))
    if kind in ("choice", "grid") and not (isinstance(value, list) and value):
        raise ConfigError(f"search.space.{key}={raw!r}: {kind} needs a non-empty list of values")
    return _YAML_KINDS[kind](value)


def _own_space(name: str, cfg: ExperimentConfig) -> dict[str, Dist]:
    fixed = {f"method.{k}" for k in methods.budget_values(name, cfg.search.equal_budget)}
    space = dict(methods.get(name).module_cls.search_space()) if cfg.search.default_space else {}
    return {k: d for k, d in space.items() if k not in fixed}


PATH_KEYS = ("data.train_file", "data.validation_file")


def _absolute(key: str, dist: Dist) -> Dist:
    """Choices of local files become absolute paths: trials run in other working directories."""
    if key.rpartition(":")[2] in PATH_KEYS and isinstance(dist, Choice):
        return Choice(tuple(absolute_path(v) for v in dist.values))
    return dist


def search_space(cfg: ExperimentConfig) -> dict[str, Dist]:
    """The (conditional) space of this search, every key checked against the config before Ray starts.

    Sampled values are config values: learning rates stay in the config's units (train.lr_units) and become
    absolute in the trial, where the backbone is loaded (pipeline.methods.units)."""
    user = {k: _absolute(k, parse_dist(k, v)) for k, v in cfg.search.space.items()}
    grids = [k for k, d in user.items() if isinstance(d, Grid)]
    if grids and cfg.search.algorithm != "random":
        raise ConfigError(f"search.space.{grids[0]} is a grid; expected search.algorithm='random' with a grid, got "
                          f"{cfg.search.algorithm!r} (a model-based sampler cannot take a grid)")
    names = list(cfg.search.methods) or [cfg.method_name]
    if not cfg.search.methods:
        space = {**_own_space(names[0], cfg), **user}
    else:
        if cfg.search.method_grid and cfg.search.algorithm != "random":
            raise ConfigError(f"search.method_grid=true needs search.algorithm='random', got "
                              f"{cfg.search.algorithm!r} (a model-based sampler cannot take a grid)")
        space = {METHOD_KEY: (Grid if cfg.search.method_grid else Choice)(tuple(names))}
        for name in names:
            space.update({f"{name}:{k}": d for k, d in _own_space(name, cfg).items()})
        space.update(user)
    base = cfg.to_dict()
    for name in names:  # every key, at its first value, must give a valid config for the method it applies to
        params = {METHOD_KEY: name} if cfg.search.methods else {}
        first = {k: (d.values[0] if isinstance(d, Choice | Grid) else d.lo) for k, d in space.items()
                 if k != METHOD_KEY}
        params.update(first)
        try:
            ExperimentConfig.from_dict(trial_config(base, params))
        except (ConfigError, ValueError) as e:
            raise ConfigError(f"search space for method {name!r}: {e}") from None
    return space


def trial_config(base: dict, params: dict[str, Any]) -> dict:
    """The experiment dict of one trial: `base` with the sampled method (if any) and its own keys applied."""
    out = copy.deepcopy(base)
    search = out.get("search", {})
    name = params.get(METHOD_KEY)
    if name is not None:
        if name not in search.get("methods", {}):
            raise ConfigError(f"method.name={name!r} is not one of search.methods {list(search.get('methods', {}))}")
        out["method"] = {"name": name, **(search["methods"][name] or {})}
    name = name or out.get("method", {}).get("name", "pt")
    out["method"] = {**out.get("method", {}), **methods.budget_values(name, search.get("equal_budget"))}
    own = {k.partition(":")[2]: v for k, v in params.items() if k.startswith(f"{name}:")}
    plain = {k: v for k, v in params.items() if ":" not in k and k != METHOD_KEY}
    return apply_overrides(out, {**plain, **own})


def to_ray(space: dict[str, Dist]) -> dict:
    """Convert Ray-free specs to ray.tune domains (keys stay dotted config paths)."""
    from ray import tune

    conv = {Choice: lambda d: tune.choice(list(d.values)), LogUniform: lambda d: tune.loguniform(d.lo, d.hi),
            Uniform: lambda d: tune.uniform(d.lo, d.hi), Grid: lambda d: tune.grid_search(list(d.values))}
    return {k: conv[type(d)](d) for k, d in space.items()}
