"""Method registry. Every sibling module is imported on first use and registers itself with `@register`.

Adding a method = adding one file here; nothing else in the project names methods.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from typing import Any

from pipeline.methods.base import BackboneInfo, EmbedRows
from pipeline.schema import ConfigError


@dataclass(frozen=True)
class MethodSpec:
    """A registered method: its name, config dataclass and module class."""

    name: str
    """Registry key used in configs and prompt_config.json."""
    config_cls: type
    """Config dataclass (fields with one-line docstrings)."""
    module_cls: type
    """PromptMethod subclass built as module_cls(cfg, info, embed_rows, seed)."""


_REGISTRY: dict[str, MethodSpec] = {}
_NOT_METHODS = {"base", "table", "units"}  # helper modules beside the method files
_LOADED = False


def register(name: str, config_cls: type):
    """Class decorator: register a PromptMethod subclass under `name` with its config dataclass."""

    def wrap(cls: type) -> type:
        from pipeline.methods.base import PromptMethod

        if not issubclass(cls, PromptMethod):
            raise TypeError(f"prompt method {name!r}: {cls.__name__} must subclass pipeline.methods.base.PromptMethod")
        if name in _REGISTRY and _REGISTRY[name].module_cls is not cls:
            raise ValueError(f"prompt method {name!r} is registered twice")
        _REGISTRY[name] = MethodSpec(name, config_cls, cls)
        cls.method_name = name
        return cls

    return wrap


def _load_all() -> None:
    global _LOADED
    if not _LOADED:
        for mod in pkgutil.iter_modules(__path__):
            if mod.name not in _NOT_METHODS and not mod.name.startswith("_"):
                importlib.import_module(f"{__name__}.{mod.name}")
        _LOADED = True


def names() -> list[str]:
    """Registered method names, sorted."""
    _load_all()
    return sorted(_REGISTRY)


def get(name: str) -> MethodSpec:
    """The spec registered under `name`; a one-line error lists the known methods otherwise."""
    _load_all()
    if name not in _REGISTRY:
        raise ValueError(f"unknown prompt method {name!r}; expected one of: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def config_class(name: str) -> type:
    """Config dataclass of method `name`."""
    return get(name).config_cls


def name_of(cfg: Any) -> str:
    """Registered name of the method whose config dataclass `cfg` is an instance of."""
    _load_all()
    for spec in _REGISTRY.values():
        if type(cfg) is spec.config_cls:
            return spec.name
    raise ValueError(f"{type(cfg).__name__} is not the config of any registered prompt method")


def build(cfg: Any, info: BackboneInfo, embed_rows: EmbedRows | None = None, seed: int = 0):
    """Instantiate the method configured by `cfg` over a backbone described by `info`."""
    return get(name_of(cfg)).module_cls(cfg, info, embed_rows, seed)


def budget_values(name: str, tokens: int | None, key: str = "search.equal_budget") -> dict[str, Any]:
    """Config values that put method `name` at PT's budget of `tokens` tokens ({} when not in that mode)."""
    if tokens is None:
        return {}
    values = get(name).module_cls.budget_overrides(tokens)
    if values is None:
        raise ConfigError(f"{key}={tokens}: method {name!r} declares no budget_overrides")
    return values
