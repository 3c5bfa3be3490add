"""ZeRO-3 loading: the backbone is built already partitioned (deepspeed.zero.Init through transformers), never
materialised whole on a rank; prompts still initialise from its (gathered) vocabulary rows."""

from __future__ import annotations

import subprocess
import sys

import torch


def test_zero3_backbone_is_partitioned_at_load(gloo_world, tiny_dirs):
    from pipeline import methods
    from pipeline.config import BackboneConfig, TrainConfig
    from pipeline.methods.pt import PTConfig
    from pipeline.model.backbone import embedding_rows, load_backbone
    from pipeline.train.ds_config import ds_config

    cfg = BackboneConfig(name_or_path=str(tiny_dirs["llama"]))
    dense, _, info = load_backbone(cfg)
    model, _, info3 = load_backbone(cfg, zero3_config=ds_config(TrainConfig(zero_stage=3), "float32"))
    params = list(model.parameters())
    assert params and all(hasattr(p, "ds_id") for p in params)  # partitioned from construction
    assert sum(p.numel() for p in params) == 0  # placeholders: the full tensors live only in ZeRO's shards
    assert sum(p.ds_numel for p in params) == sum(p.numel() for p in dense.parameters())
    assert info3 == info  # sizes read from module attributes, not from the (empty) weights
    ids = torch.arange(5)
    assert torch.equal(embedding_rows(model)(ids), embedding_rows(dense)(ids))  # gathered, same checkpoint
    method = methods.build(PTConfig(num_tokens=3), info3, embedding_rows(model), seed=0)
    assert method.prompt.shape == (3, info.hidden_size)


def test_world_of_one_restores_the_environment_and_leaves_an_existing_group_alone():
    # In a fresh interpreter: this test process may already hold the session's group (the gloo_world fixture).
    code = """
import os
import torch.distributed as dist
from pipeline.model.zero import world_of_one
os.environ["MASTER_PORT"] = "1"  # a launcher's value must come back after the block
os.environ.pop("RANK", None)
with world_of_one():
    assert dist.is_initialized() and dist.get_world_size() == 1
    assert int(os.environ["MASTER_PORT"]) not in (0, 1)  # the store's own bound port
    with world_of_one():  # nested: the outer group is reused, not destroyed by the inner block
        pass
    assert dist.is_initialized()
assert not dist.is_initialized()
assert os.environ["MASTER_PORT"] == "1" and "RANK" not in os.environ
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]
