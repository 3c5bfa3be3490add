"""What a reused trial process keeps between trials: its process group, the frozen backbone, the encoded data.

A trial process that Tune reuses (`reuse_actors`) runs one trial after another. The frozen backbone is the same
for every trial of a search (a 70B bf16 backbone is 141 GB: loading it per trial costs minutes), so it is loaded
once per process and kept while the identity asked for stays the same; a different identity evicts it (one backbone
per process at most). Nothing trainable is kept: the method, optimizer and DeepSpeed engine are new for every trial,
and the backbone is frozen (requires_grad False, never stepped), so one trial cannot change what the next one sees.
ZeRO-3 backbones are not cached: their partitions belong to the engine that partitioned them.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

_KEPT: dict[str, tuple[str, Any]] = {}  # kind -> (identity, value): one entry per kind
_WORLD = contextlib.ExitStack()


def process_world() -> None:
    """A gloo process group of one for this process, created once and kept: DeepSpeed caches the first group it
    wraps, so a group destroyed and made again between trials would break the next engine."""
    import torch.distributed as dist

    from pipeline.model.zero import world_of_one

    if not dist.is_initialized():
        _WORLD.enter_context(world_of_one())


def kept(kind: str, identity: str, build: Callable[[], Any]) -> Any:
    """The value kept under `kind` if it was built for `identity`, else build() (evicting the old one first)."""
    held = _KEPT.get(kind)
    if held is not None and held[0] == identity:
        return held[1]
    _KEPT.pop(kind, None)  # drop the old value before building: two backbones never coexist
    value = build()
    _KEPT[kind] = (identity, value)
    return value


def forget() -> None:
    """Drop everything kept (tests; a process about to change its mind)."""
    _KEPT.clear()


def backbone(cfg, zero3_config: dict | None):
    """(model, tokenizer, info) of `cfg` (a BackboneConfig), from this process's cache unless ZeRO-3."""
    from pipeline.model.backbone import ensure_backbone, load_backbone

    if zero3_config is not None:
        return load_backbone(cfg, zero3_config=zero3_config)
    # path or hub id, revision, dtype, quantisation, tiny init; for a GGUF file the converted directory, which is
    # named by the file's sha256, so a changed file is a different backbone
    identity = identity_of(asdict(cfg), ensure_backbone(cfg))
    return kept("backbone", identity, lambda: load_backbone(cfg))


def identity_of(*parts: Any) -> str:
    """A cache identity from JSON-able parts."""
    return json.dumps(parts, sort_keys=True, default=str)
