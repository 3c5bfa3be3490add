"""What every config field means, for people: `promptfarm config [SECTION]` prints each field of the experiment
config (and of every registered method's config) with its type, default, allowed range and docstring.

The docstrings are the string literals written under each dataclass field (the project's config style); they are
read from the class source with `ast`, so the text printed is the text in the code.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import re
import textwrap
import typing
from typing import Any, NamedTuple


class FieldDoc(NamedTuple):
    """One config field as printed."""

    key: str
    """Dotted key as written in YAML or an override, e.g. 'train.max_steps'."""
    type: str
    """Type as written in the code, e.g. 'int | None'."""
    default: str
    """Default value (repr), or '-' when a factory builds it."""
    range: str
    """Allowed range from the field's bounds() metadata, e.g. '[1, inf]', or ''."""
    doc: str
    """The field's docstring, joined onto one line."""
    units: str = ""
    """What the value is measured in when not plain, e.g. 'embedding' (a learning rate in embedding units)."""
    method: str = ""
    """For `method.*` fields: the method (method.name) whose config has the field."""


def field_docstrings(cls: type) -> dict[str, str]:
    """{field name: docstring} from the string literal under each annotated field of dataclass `cls`."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body
    out = {}
    for node, nxt in zip(body, body[1:], strict=False):
        if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and isinstance(nxt, ast.Expr)
                and isinstance(nxt.value, ast.Constant) and isinstance(nxt.value.value, str)):
            out[node.target.id] = " ".join(nxt.value.value.split())
    return out


def _type_name(tp: Any) -> str:
    if isinstance(tp, type) and not typing.get_args(tp):
        return tp.__name__
    return str(tp).replace("typing.", "")


def _range(meta: Any) -> str:
    if "range" not in meta:
        return ""
    lo, hi, lo_open = meta["range"]
    return f"{'(' if lo_open else '['}{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}]"


def describe(cls: type, prefix: str = "") -> list[FieldDoc]:
    """Every field of dataclass `cls`, nested dataclass sections expanded under their dotted prefix."""
    docs, hints, out = field_docstrings(cls), typing.get_type_hints(cls), []
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            out += describe(tp, f"{prefix}{f.name}.")
            continue
        default = repr(f.default) if f.default is not dataclasses.MISSING else (
            repr(f.default_factory()) if f.default_factory is not dataclasses.MISSING else "-")
        out.append(FieldDoc(prefix + f.name, _type_name(tp), default, _range(f.metadata), docs.get(f.name, ""),
                            units=f.metadata.get("units", "")))
    return out


def experiment_fields(section: str | None = None) -> list[FieldDoc]:
    """Fields of the experiment config, plus `method.*` of every registered method (each row names its method),
    limited to one top-level `section` (e.g. 'train', 'method', 'pt') when given; an unknown section is a
    ValueError naming the sections there are."""
    from pipeline import methods
    from pipeline.config import ExperimentConfig

    rows = [r for r in describe(ExperimentConfig) if r.key != "method"]
    for name in methods.names():
        rows += [r._replace(method=name) for r in describe(methods.config_class(name), "method.")]
    if section is None:
        return rows
    keep = [r for r in rows if r.key.split(".")[0] == section or r.method == section]
    if not keep:
        sections = sorted({r.key.split(".")[0] for r in rows})
        raise ValueError(f"config section {section!r} does not exist; expected one of: {', '.join(sections)} "
                         f"or a method name ({', '.join(methods.names())})")
    return keep


_UNITS = {"embedding": "relative: x (embedding RMS / 10) where the backbone loads, unless train.lr_units=absolute"}
FLOAT_NOTE = ("float values, in YAML files and overrides alike, take any spelling Python's float() reads: 1e-4, 5E-3, "
              "+3e2, .5, 1., 1_000.5; NaN and inf are refused where a range is shown")
"""Printed after the fields when one is a float: YAML 1.1 alone would read 1e-4 as a string (pipeline.schema)."""


def to_text(rows: list[FieldDoc]) -> str:
    """Two lines a field: 'key: type = default  range' then the indented docstring; FLOAT_NOTE after them when a
    field is a float."""
    lines = []
    for r in rows:
        when = f"  (method.name: {r.method})" if r.method else ""
        units = f"  [{_UNITS[r.units]}]" if r.units else ""
        lines.append(f"{r.key}: {r.type} = {r.default}" + (f"  {r.range}" if r.range else "") + units + when)
        lines.append(f"    {r.doc}")
    if any(re.search(r"\bfloat\b", r.type) for r in rows):  # \b: not the 'float32' of a dtype Literal
        lines += ["", f"note: {FLOAT_NOTE}"]
    return "\n".join(lines)
