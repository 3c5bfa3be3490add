"""Typed dataclasses from YAML: key, type and range validation with one-line errors, and `a.b=c` overrides.

The machinery under `pipeline.config` (which re-exports these names): any dataclass whose fields carry
`bounds(...)` (value-range) metadata and type hints is built from a nested dict by `build_dataclass`.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml


class ConfigError(ValueError):
    """A configuration value is invalid; the message is one line naming key, value and what is allowed."""


def bounds(lo: float | None = None, hi: float | None = None, *, lo_open: bool = False,
           units: str | None = None) -> dict:
    """Field metadata declaring an inclusive range [lo, hi] (lower bound exclusive with lo_open); `units` names
    what a value is measured in when that is not plain ('embedding': a learning rate in embedding units,
    pipeline.methods.units), shown by `promptfarm config`."""
    meta: dict = {"range": (lo, hi, lo_open)}
    if units:
        meta["units"] = units
    return meta


def build_dataclass(cls: type, raw: Any, prefix: str) -> Any:
    """Instantiate dataclass `cls` from `raw`, checking keys, types and ranges recursively."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: expected a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ConfigError(f"unknown key '{prefix}{unknown[0]}'; allowed keys: {', '.join(fields)}")
    kwargs = {}
    for key, value in raw.items():
        kwargs[key] = _check(hints[key], value, prefix + key, fields[key].metadata)
    return cls(**kwargs)


def _check(tp: Any, value: Any, key: str, meta: Any) -> Any:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _check(inner[0], value, key, meta) if len(inner) == 1 else value
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{key}={value!r} is not allowed; expected one of {list(args)}")
        return value
    if dataclasses.is_dataclass(tp):
        return build_dataclass(tp, value, key + ".")
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}={value!r} has the wrong type; expected a mapping")
        return dict(value)
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{key}={value!r} has the wrong type; expected a list")
        return origin(_check(args[0], v, key, {}) for v in value)
    ok = isinstance(value, tp) and not (tp in (int, float) and isinstance(value, bool))
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        value, ok = float(value), True
    if not ok:
        raise ConfigError(f"{key}={value!r} has the wrong type; expected {tp.__name__}")
    if "range" in meta:
        lo, hi, lo_open = meta["range"]
        if (lo is not None and (value <= lo if lo_open else value < lo)) or (hi is not None and value > hi):
            lo_s = "-inf" if lo is None else lo
            hi_s = "inf" if hi is None else hi
            raise ConfigError(f"{key}={value!r} is out of range; expected {'(' if lo_open else '['}{lo_s}, {hi_s}]")
    return value


def parse_override(item: str) -> tuple[list[str], Any]:
    """'train.lr=0.3' -> (['train', 'lr'], 0.3); the value is parsed as YAML (numbers, bools, null, lists)."""
    if "=" not in item:
        raise ConfigError(f"override {item!r} is not of the form key.path=value")
    key, _, text = item.partition("=")
    try:
        return key.strip().split("."), yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError as e:
        raise ConfigError(f"override {item!r}: the value is not valid YAML ({_yaml_problem(e)})") from None


def _yaml_problem(e: yaml.YAMLError) -> str:
    """One line from a YAML error: what is wrong and where (1-based line and column)."""
    problem = getattr(e, "problem", None) or str(e).splitlines()[0]
    mark = getattr(e, "problem_mark", None)
    return f"{problem} at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else problem


def apply_overrides(raw: dict, overrides: list[str] | dict[str, Any]) -> dict:
    """Return a copy of nested dict `raw` with dotted-key overrides applied (strings or a mapping)."""
    import copy

    out = copy.deepcopy(raw)
    items = overrides.items() if isinstance(overrides, dict) else (parse_override(o) for o in overrides)
    for path, value in items:
        path = path.split(".") if isinstance(path, str) else path
        node = out
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {'.'.join(path)}: '{part}' is not a section")
        node[path[-1]] = value
    return out


def read_yaml(path: str | Path | None, overrides: list[str] | None = None, kind: str = "experiment") -> dict:
    """The mapping in YAML file `path` (None: empty) with `a.b=c` overrides applied; `kind` names the file in errors."""
    raw: dict = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file {str(p)!r} not found; expected a YAML {kind} file")
        try:
            raw = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"config file {str(p)!r} is not valid YAML: {_yaml_problem(e)}") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"config file {str(p)!r} must hold a mapping at the top level")
    return apply_overrides(raw, overrides or [])
