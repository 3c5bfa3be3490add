"""The optimizer half of a trial checkpoint, so a restarted worker group resumes exactly where it stopped.

The prompt half is the prompt artifact (pipeline.artifact). This half is each rank's share of the optimizer:
under ZeRO-2/3 DeepSpeed steps the client AdamW over flat fp32 partitions (this rank's slice of each param group,
or of each ZeRO-3 sub-group), so those flat tensors ARE the fp32 master weights and the AdamW state keyed by them
(step, exp_avg, exp_avg_sq) the Adam moments of that slice. Both are written per rank as safetensors (tensors)
+ JSON (layout), no pickle. Size: 3x the rank's slice of the trainable parameters (master + two moments), e.g.
0.7 MB for PT-100 at d=576 on one rank.

Restoring needs the same layout (world size, ZeRO stage, group sizes); a different one (a trial restarted on
another number of workers) cannot be mapped slice by slice, so it resumes with fresh moments and says so.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file


def _base(engine) -> torch.optim.Optimizer:
    """The torch optimizer doing the update: DeepSpeed's ZeRO wrappers hold it as `.optimizer`."""
    opt = engine.optimizer
    return getattr(opt, "optimizer", opt)


def _masters(engine) -> list[torch.Tensor]:
    """This rank's fp32 master tensors, the keys of the AdamW state. ZeRO-3 points the optimizer's param groups at
    them only while it steps (they are empty lists in between), so they are read from the wrapper, not the groups."""
    opt = engine.optimizer
    for name in ("fp32_partitioned_groups_flat", "single_partition_of_fp32_groups"):  # ZeRO-3, ZeRO-1/2
        if hasattr(opt, name):
            return list(getattr(opt, name))
    return [p for g in _base(engine).param_groups for p in g["params"]]


def _files(directory: str | Path, rank: int) -> tuple[Path, Path]:
    d = Path(directory)
    return d / f"optimizer-rank{rank}.safetensors", d / f"optimizer-rank{rank}.json"


def save_optimizer(engine, directory: str | Path, rank: int, world: int, zero_stage: int) -> None:
    """Write this rank's master weights and Adam state into `directory` (each rank its own two files)."""
    base, masters = _base(engine), _masters(engine)
    tensors: dict[str, torch.Tensor] = {}
    for i, p in enumerate(masters):
        tensors[f"m{i}.param"] = p.detach().float().cpu().clone()
        for name, value in base.state.get(p, {}).items():
            if torch.is_tensor(value):
                tensors[f"m{i}.{name}"] = value.detach().cpu().clone()
    meta = {"world": world, "zero_stage": zero_stage, "layout": [p.numel() for p in masters]}
    tensor_file, meta_file = _files(directory, rank)
    save_file(tensors, str(tensor_file))
    meta_file.write_text(json.dumps(meta))


def load_optimizer(engine, directory: str | Path, rank: int, world: int, zero_stage: int) -> str | None:
    """Restore this rank's master weights and Adam state from `directory`; None when restored, else why not."""
    tensor_file, meta_file = _files(directory, rank)
    if not tensor_file.is_file() or not meta_file.is_file():
        return "the checkpoint holds no optimizer state (written by an older version)"
    meta = json.loads(meta_file.read_text())
    base, masters = _base(engine), _masters(engine)
    here = {"world": world, "zero_stage": zero_stage, "layout": [p.numel() for p in masters]}
    for key, value in here.items():
        if meta.get(key) != value:
            return f"optimizer state was saved with {key}={meta.get(key)!r}, this run has {key}={value!r}"
    tensors = load_file(str(tensor_file))
    with torch.no_grad():
        for i, p in enumerate(masters):
            p.copy_(tensors[f"m{i}.param"].to(p.dtype).view_as(p))
            state = {k.split(".", 1)[1]: v.to(p.device) for k, v in tensors.items()
                     if k.startswith(f"m{i}.") and k != f"m{i}.param"}
            if state:
                base.state[p] = state
    return None
