"""Typed dataclasses from YAML: key, type and range validation with one-line errors, and `a.b=c` overrides.

The machinery under `pipeline.config` (which re-exports these names): any dataclass whose fields carry
`bounds(...)` (value-range) metadata and type hints is built from a nested dict by `build_dataclass`.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml


class ConfigError(ValueError):
    """A configuration value is invalid; the message is one line naming key, value and what is allowed."""


MAX_CONFIG_BYTES = 1 << 20  # a config is a few KiB: a bigger file is a data file or a binary given by mistake


class DuplicateKeyError(ValueError):
    """A JSON object names one key twice (JSON parsers keep the last silently)."""


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict:
    out: dict = {}
    for key, value in pairs:
        if key in out:
            raise DuplicateKeyError(f"key {key!r} appears twice in one object; expected each key once")
        out[key] = value
    return out


def loads_unique(text: str | bytes) -> Any:
    """`json.loads`, refusing an object with a repeated key (DuplicateKeyError) instead of keeping the last."""
    import json

    return json.loads(text, object_pairs_hook=_unique_pairs)


class _Loader(yaml.SafeLoader):
    """YAML 1.1 as PyYAML reads it, plus the exponent floats YAML 1.2 and Python read (1e-4, 5E-3, +3e2), which
    YAML 1.1 leaves as strings: learning rates are written that way. A mapping that names a key twice is an
    error (PyYAML keeps the last: a second `train:` section would replace the first whole)."""

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.get(key)
            except TypeError:  # an unhashable key: the base class says so
                continue
            if first is not None:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} given twice (first at line {first}); expected each key once",
                    key_node.start_mark)
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep)


_DIGITS = r"[0-9](?:_?[0-9])*"  # Python's float(): an underscore only between digits
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(rf"^[-+]?(?:{_DIGITS}(?:\.(?:{_DIGITS})?)?|\.{_DIGITS})[eE][-+]?{_DIGITS}$"),
    list("-+.0123456789"))


def _load_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)  # a SafeLoader: plain data only


def bounds(lo: float | None = None, hi: float | None = None, *, lo_open: bool = False,
           units: str | None = None) -> dict:
    """Field metadata declaring an inclusive range [lo, hi] (lower bound exclusive with lo_open); `units` names
    what a value is measured in when that is not plain ('embedding': a learning rate in embedding units,
    pipeline.methods.units), shown by `promptfarm config`."""
    meta: dict = {"range": (lo, hi, lo_open)}
    if units:
        meta["units"] = units
    return meta


_PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


def plain_name(becomes: str) -> dict:
    """Field metadata: the value is one plain name (letters, digits, '-', '_', '.'; at most 128), because it
    `becomes` a path component or a registry name (say which, for the error)."""
    return {"plain_name": becomes}


def check_plain_name(value: Any, key: str, becomes: str) -> None:
    """ConfigError unless `value` is one plain name: no '/', no '..', not empty, not absolute."""
    if not isinstance(value, str) or not _PLAIN_NAME.fullmatch(value) or ".." in value:
        raise ConfigError(f"{key}={value!r} is not a plain name; expected letters, digits, '-', '_' and '.' "
                          f"(at most 128, no '..'), since it {becomes}")


def max_chars(n: int) -> dict:
    """Field metadata: a string of at most `n` characters (a separator is a few; a recorded one of 1 MB is an
    attack on every allocation sized by it)."""
    return {"max_chars": n}


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
        meta, value = fields[key].metadata, kwargs[key]
        if meta.get("plain_name") and value is not None:
            check_plain_name(value, prefix + key, meta["plain_name"])
        if isinstance(value, str) and len(value) > meta.get("max_chars", len(value)):
            raise ConfigError(f"{prefix}{key} is {len(value)} characters long; expected at most {meta['max_chars']}")
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
        return value if isinstance(value, tp) else build_dataclass(tp, value, key + ".")
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}={value!r} has the wrong type; expected a mapping")
        return dict(value)
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{key}={value!r} has the wrong type; expected a list")
        return origin(_check(args[0], v, key, {}) for v in value)
    ok = isinstance(value, tp) and not (tp in (int, float) and isinstance(value, bool))
    if tp is float and not ok and not isinstance(value, bool):
        value, ok = _as_float(value)
    if not ok:
        raise ConfigError(f"{key}={value!r} has the wrong type; expected {tp.__name__}")
    if "range" in meta:
        lo, hi, lo_open = meta["range"]
        expected = f"{'(' if lo_open else '['}{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}]"
        if tp is float and not math.isfinite(value):  # NaN compares False to every bound: it would pass them
            raise ConfigError(f"{key}={value!r} is not a finite number; expected a value in {expected}")
        if (lo is not None and (value <= lo if lo_open else value < lo)) or (hi is not None and value > hi):
            raise ConfigError(f"{key}={value!r} is out of range; expected {expected}")
    return value


def _as_float(value: Any) -> tuple[Any, bool]:
    """(float, True) for an int or any text Python's float() reads ('1e-4' quoted, '1_000.5', 'nan'); else
    (value, False). Range checks refuse the non-finite ones where a field has bounds."""
    if isinstance(value, int):
        try:
            return float(value), True
        except OverflowError:  # an int of 309+ digits: as inf, refused by the range check
            return math.inf, True
    if isinstance(value, str):
        try:
            return float(value), True
        except ValueError:
            pass
    return value, False


def parse_override(item: str) -> tuple[list[str], Any]:
    """'train.lr=0.3' -> (['train', 'lr'], 0.3); the value is parsed as YAML (numbers, bools, null, lists)."""
    if "=" not in item:
        raise ConfigError(f"override {item!r} is not of the form key.path=value")
    key, _, text = item.partition("=")
    try:
        return key.strip().split("."), _load_yaml(text) if text.strip() else ""
    except (yaml.YAMLError, ValueError, RecursionError) as e:
        raise ConfigError(f"override {item!r}: the value is not valid YAML ({_yaml_problem(e)})") from None


def _yaml_problem(e: Exception) -> str:
    """One line from a YAML error (or the ValueError/RecursionError of a value PyYAML cannot build: an int of
    5,000 digits, lists nested thousands deep): what is wrong and where (1-based line and column)."""
    if isinstance(e, RecursionError):
        return "nested too deeply"
    problem = getattr(e, "problem", None) or (str(e).strip().splitlines() or [type(e).__name__])[0]
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
        text = _config_text(p, kind)
        try:
            raw = _load_yaml(text) or {}
        except (yaml.YAMLError, ValueError, RecursionError) as e:
            raise ConfigError(f"config file {str(p)!r} is not valid YAML: {_yaml_problem(e)}") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"config file {str(p)!r} must hold a mapping at the top level")
    return apply_overrides(raw, overrides or [])


def _config_text(p: Path, kind: str) -> str:
    """The text of config file `p`: at most MAX_CONFIG_BYTES read, UTF-8 (a BOM allowed); a binary file (a NUL
    byte, invalid UTF-8), an unreadable or an oversized one is a ConfigError naming the file."""
    try:
        with p.open("rb") as handle:
            data = handle.read(MAX_CONFIG_BYTES + 1)
    except OSError as e:
        raise ConfigError(f"config file {str(p)!r} cannot be read ({e.strerror or e}); expected a readable YAML "
                          f"{kind} file") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"config file {str(p)!r} is larger than {MAX_CONFIG_BYTES // 1024} KiB; expected a YAML "
                          f"{kind} file (a few KiB)")
    at, why = data.find(b"\x00"), "a NUL byte"
    if at < 0:
        bom = 3 if data.startswith(b"\xef\xbb\xbf") else 0
        try:
            return data[bom:].decode("utf-8")
        except UnicodeDecodeError as e:
            at = bom + e.start
            why = f"byte 0x{data[at]:02x}, not UTF-8,"
    raise ConfigError(f"config file {str(p)!r} is binary, not text ({why} at offset {at}); expected a UTF-8 YAML "
                      f"{kind} file")
