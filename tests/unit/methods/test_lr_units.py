"""Learning rates in embedding units (pipeline.methods.units): the declared rms_power of every group makes each method
compute the same function when the embeddings are rescaled, and the trial's optimizer turns configured lrs into
absolute ones from the loaded backbone's RMS, so the first steps in RMS units match across a 100x embedding change."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from safetensors.torch import load_file, save_file

from pipeline import methods
from pipeline.config import load_config
from pipeline.data.builtin import get_task
from pipeline.data.encode import Encoder, Encoding
from pipeline.data.sources import load_examples
from pipeline.methods.base import PromptBatch
from pipeline.methods.ept import EPTConfig
from pipeline.methods.units import REFERENCE_RMS, absolute_groups, lr_factor
from pipeline.model.backbone import embedding_rows, input_embedding_rms, load_backbone
from pipeline.model.prompted import PromptedModel
from pipeline.train.loop import batches, build_engine, train_step
from tests.conftest import FIXTURES, ROOT
from tests.method_helpers import VOCAB, make_info

D = 16
SCALE = 100.0


def _configs():
    """Every method at a small size (EPT with fusion, its gate and its projection)."""
    small = {"pt": {"num_tokens": 4}, "dept": {"num_tokens": 3, "rank": 2, "max_length": 10},
             "adept": {"num_tokens": 3, "rank": 2, "dropout": 0.0}, "lamp": {"num_tokens": 4, "rank": 2, "pool": 2},
             "ept": {"num_tokens": 3, "rank": 2, "max_length": 10, "num_spaces": 2, "space_rank": 2}}
    assert set(small) == set(methods.names())
    return [(name, methods.config_class(name)(**kw)) for name, kw in small.items()]


def test_lr_factor_follows_the_declared_power():
    assert lr_factor(0.136, 1, "embedding") == pytest.approx(0.0136)
    assert lr_factor(0.136, 0, "embedding") == 1.0
    assert lr_factor(0.136, -1, "embedding") == pytest.approx(1 / 0.0136)
    assert lr_factor(0.136, 1, "absolute") == 1.0
    groups = absolute_groups([{"params": [], "lr": 0.3, "name": "prompt", "rms_power": 1}], 0.136, "embedding")
    assert groups[0]["lr"] == pytest.approx(0.3 * 0.136 / REFERENCE_RMS) and groups[0]["configured_lr"] == 0.3
    with pytest.raises(ValueError, match="embedding RMS is nan"):
        lr_factor(float("nan"), 1, "embedding")


@pytest.mark.parametrize("family", [False, True], ids=["llama", "t5"])
@pytest.mark.parametrize(("name", "cfg"), _configs(), ids=[n for n, _ in _configs()])
def test_declared_powers_make_every_method_scale_equivariant(name, cfg, family):
    """Scale the input embeddings by c and every tensor of power p by c^p: the rewritten batch scales by exactly c.
    A group declared with the wrong power breaks this (e.g. ADePT's W2 at power 1 gives c^2 offsets)."""
    info = make_info(D, is_seq2seq=family)
    base = methods.build(cfg, info, lambda ids: torch.randn(len(ids), D, generator=torch.Generator().manual_seed(1)),
                         seed=0).eval()
    with torch.no_grad():  # every tensor away from its (partly zero) init, so each one matters
        for p in base.parameters():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())) * 0.3)
    scaled = methods.build(cfg, info, None, seed=0).eval()
    scaled.load_state_dict(base.state_dict())
    with torch.no_grad():
        for g in scaled.param_groups():
            for p in g["params"]:
                p.mul_(SCALE ** g["rms_power"])
    ids = torch.randint(4, VOCAB, (2, 7))
    emb = torch.randn(2, 7, D, dtype=torch.float64).float()
    mask = torch.ones_like(ids)
    mask[1, -2:] = 0
    labels = None if family else ids.masked_fill(mask == 0, -100).index_fill(1, torch.tensor([0, 1, 2]), -100)
    out = base(PromptBatch(emb, mask, labels)).inputs_embeds
    out_scaled = scaled(PromptBatch(emb * SCALE, mask, labels)).inputs_embeds
    torch.testing.assert_close(out_scaled, out * SCALE, rtol=1e-4, atol=1e-4 * SCALE)


def test_ept_fusion_attends_alike_on_every_scale_and_is_not_uniform():
    """The fusion's logits are those of unit-RMS P and B: the same attention on a backbone 100x larger (or 100x
    smaller: SmolLM2's 0.136 against T5's ~10), and peaked enough to pick rows (plain P B^T / sqrt(d) at RMS 0.136
    was uniform to 0.005)."""
    info = make_info(D)
    cfg = EPTConfig(num_tokens=3, rank=4, max_length=10, num_spaces=1, space_rank=0, fusion=True)
    m = methods.build(cfg, info, lambda ids: torch.randn(len(ids), D), seed=0)
    with torch.no_grad():
        m.lowrank_b.copy_(m.prompt[:1].repeat(4, 1) * torch.tensor([[1.0], [-1.0], [0.5], [0.0]]))
        m.prompt.mul_(0.136 / SCALE)  # a SmolLM2-sized prompt, and B at the same scale
        m.lowrank_b.mul_(0.136 / SCALE)
    small = m.fused_prompt().detach() - m.prompt.detach()
    with torch.no_grad():
        m.prompt.mul_(SCALE)
        m.lowrank_b.mul_(SCALE)
    torch.testing.assert_close(m.fused_prompt().detach() - m.prompt.detach(), small * SCALE, rtol=1e-4, atol=1e-9)
    p, b = m.prompt.detach(), m.lowrank_b.detach()
    weights = torch.softmax(p @ b.T / (D ** 0.5 * p.pow(2).mean().sqrt() * b.pow(2).mean().sqrt()), -1)
    assert weights[0].max() > 0.5  # row 0 of P is B's row 0: attention picks it (uniform would be 0.25)


@pytest.fixture(scope="module")
def scaled_pair(tiny_dirs, tmp_path_factory):
    """The tiny LLaMA and a copy whose input embedding is 100x larger (everything else identical)."""
    import shutil

    src = tiny_dirs["llama"]
    dst = tmp_path_factory.mktemp("scaled") / "tiny-llama-x100"
    shutil.copytree(src, dst)
    weights = load_file(str(dst / "model.safetensors"))
    key = next(k for k in weights if k.endswith("embed_tokens.weight"))
    weights[key] = weights[key] * SCALE
    save_file(weights, str(dst / "model.safetensors"), metadata={"format": "pt"})
    return src, dst


def _first_step(backbone_dir, method: str, units: str) -> dict[str, float]:
    """{group: mean |update| / rms^power} after one optimizer step of the trial's own engine."""
    cfg = load_config(ROOT / "jobs" / "configs" / "smoke.yaml", [
        f"backbone.name_or_path={backbone_dir}", "backbone.init_tiny=null", "train.batch_size=4",
        f"train.lr_units={units}", "train.weight_decay=0", "train.max_steps=1", f"method.name={method}"])
    torch.manual_seed(0)
    model, tok, info = load_backbone(cfg.backbone)
    rms = input_embedding_rms(model)
    built = methods.build(cfg.method, info, embedding_rows(model), seed=0)
    engine = build_engine(cfg, PromptedModel(model, built, False), built, 0)
    before = {n: p.detach().clone() for n, p in built.named_parameters()}
    task = get_task("sst2")
    rows = load_examples(task, "train", str(FIXTURES / "sst2_tiny" / "train.tsv"), None, 0)
    feats = Encoder(tok, False, Encoding(64, 8, "")).examples(task, rows)
    train_step(engine, batches(feats, 4, tok.pad_token_id, 0), 1, "cpu", 1, 1)
    names = {id(p): n for n, p in built.named_parameters()}
    out = {}
    for g in built.param_groups():
        moved = torch.cat([(p.detach() - before[names[id(p)]]).abs().flatten() for p in g["params"]])
        out[g["name"]] = float(moved.mean()) / rms ** g["rms_power"]
    engine.destroy()
    return out


@pytest.mark.parametrize("method", ["pt", "dept", "adept"])
def test_same_relative_config_gives_the_same_first_step_in_rms_units(method, scaled_pair, gloo_world):
    small, large = (_first_step(d, method, "embedding") for d in scaled_pair)
    assert set(small) == set(large)
    for name in small:  # Adam's first step is lr * sign(grad): equal once each lr follows its tensor's units
        assert small[name] == pytest.approx(large[name], rel=2e-2, abs=1e-12), (name, small, large)
    assert small["prompt"] > 0
    # the control: the same values used as absolute lrs move the larger backbone's prompt 100x less in RMS units
    raw_small, raw_large = (_first_step(d, method, "absolute") for d in scaled_pair)
    assert raw_small["prompt"] == pytest.approx(SCALE * raw_large["prompt"], rel=2e-2)


def test_configs_record_lr_units():
    cfg = load_config(None, ["train.lr_units=absolute"])
    assert dataclasses.asdict(cfg.train)["lr_units"] == "absolute"
    from pipeline.config_doc import experiment_fields, to_text

    text = to_text(experiment_fields("pt"))
    assert "method.lr: float = 0.3  (0.0, inf]  [relative" in text


def test_a_budget_that_leaves_a_part_rank_0_trains_the_rest(gloo_world, tiny_dirs):
    """EPT at 20 tokens of budget with a 12-token prompt has no room for offsets: rank 0, empty factors. The engine
    trains the prompt (the ZeRO optimizer used to fail on the empty group with an IndexError)."""
    cfg = load_config(ROOT / "jobs" / "configs" / "smoke.yaml", [
        f"backbone.name_or_path={tiny_dirs['llama']}", "backbone.init_tiny=null", "train.batch_size=4",
        "method={name: ept, num_tokens: 6, budget_tokens: 6, max_length: 16}"])
    model, tok, info = load_backbone(cfg.backbone)
    built = methods.build(cfg.method, info, embedding_rows(model), seed=0)
    assert built.lowrank_a.numel() == 0  # the budget left the offsets rank 0
    engine = build_engine(cfg, PromptedModel(model, built, False), built, 0)
    assert "lowrank_a" not in {g["name"] for g in engine.optimizer.param_groups}
    before = built.prompt.detach().clone()
    task = get_task("sst2")
    rows = load_examples(task, "train", str(FIXTURES / "sst2_tiny" / "train.tsv"), None, 0)
    feats = Encoder(tok, False, Encoding(64, 8, "")).examples(task, rows)
    train_step(engine, batches(feats, 4, tok.pad_token_id, 0), 1, "cpu", 1, 1)
    assert not torch.equal(built.prompt.detach(), before)
    engine.destroy()
