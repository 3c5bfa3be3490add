"""ZeRO-3 in one place: is a parameter partitioned, read full copies of possibly partitioned parameters, and a
process group of one for code that runs DeepSpeed outside a Ray Train worker (benchmarks, tests).

The signal for "partitioned" is the parameter itself (`ds_id`, set by `deepspeed.zero.Init` / the ZeRO-3 engine),
never the config: a ZeRO-3 config over a model built before `zero.Init` leaves its tensors whole until the engine
partitions them, and a read must follow what the tensor is, not what was asked for.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator

import torch


def is_partitioned(param: torch.Tensor) -> bool:
    """True when ZeRO-3 holds `param` as shards (its local tensor is a 0-element placeholder)."""
    return hasattr(param, "ds_id")


@contextlib.contextmanager
def gathered(params: Iterable[torch.Tensor]) -> Iterator[None]:
    """Full tensors inside the block (read only). Collective under ZeRO-3: every rank must enter it together."""
    params = list(params)
    if not any(is_partitioned(p) for p in params):
        yield
        return
    import deepspeed

    with deepspeed.zero.GatheredParameters(params, modifier_rank=None):
        yield


def full_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Float32 CPU copies of `module`'s state dict, gathered first where ZeRO-3 partitioned it."""
    with gathered(module.parameters()):
        return {k: v.detach().float().cpu().clone() for k, v in module.state_dict().items()}


@contextlib.contextmanager
def hf_zero3(ds_config: dict | None) -> Iterator[object | None]:
    """Model construction inside the block follows `ds_config`: a ZeRO-3 config builds partitioned models
    (transformers' HfDeepSpeedConfig -> deepspeed.zero.Init); None builds whole ones even while a ZeRO-3 model is
    alive in this process (benchmarks, tests), whose global config would otherwise partition them too. Yields the
    HfDeepSpeedConfig to keep alive with the model (transformers holds it only weakly), or None."""
    from transformers.integrations import deepspeed as hf_ds

    other = hf_ds._hf_deepspeed_config_weak_ref
    keep = None
    if ds_config is not None:
        keep = hf_ds.HfDeepSpeedConfig(ds_config)
    else:
        hf_ds.unset_hf_deepspeed_config()
    try:
        yield keep
    finally:
        if ds_config is None:
            hf_ds._hf_deepspeed_config_weak_ref = other


@contextlib.contextmanager
def world_of_one() -> Iterator[None]:
    """A gloo process group of one (rank 0) if none exists, destroyed after; an existing group is left alone.

    The store listens on a port the OS picks at bind time and keeps (port 0), so no other process can take it
    between choosing and binding (choosing a free port first and binding later races with everything else on the
    machine). DeepSpeed reads the launcher variables, so they are set to that port for the block and restored after.
    """
    import torch.distributed as dist

    if dist.is_initialized():
        yield
        return
    store = dist.TCPStore("127.0.0.1", 0, 1, is_master=True, use_libuv=True)
    env = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(store.port), "RANK": "0", "WORLD_SIZE": "1",
           "LOCAL_RANK": "0"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        dist.init_process_group("gloo", store=store, rank=0, world_size=1)
        try:
            yield
        finally:
            dist.destroy_process_group()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
