"""Quantised frozen backbones (backbone.quantization: bitsandbytes nf4 / fp4 / int8 on CPU): the linear layers are
really quantised, every method trains over them with only its own parameters changing (plain AdamW and the DeepSpeed
ZeRO-2 engine of a trial), prompts round-trip and move between quantisations with a one-line note, and ZeRO-3 is
refused at config load with its reason."""

from __future__ import annotations

import dataclasses
import logging

import pytest
import torch

from pipeline import methods
from pipeline.artifact import load_prompt, save_prompt
from pipeline.config import BackboneConfig, ConfigError, load_config
from pipeline.data.builtin import get_task
from pipeline.data.encode import Encoder, Encoding
from pipeline.data.sources import load_examples
from pipeline.model.backbone import embedding_rows, load_backbone
from pipeline.model.prompted import PromptedModel
from tests.conftest import FIXTURES, ROOT
from tests.unit.methods.test_methods_contract import _batch

pytest.importorskip("bitsandbytes")
QUANT_LAYERS = {"nf4": "Linear4bit", "fp4": "Linear4bit", "int8": "Linear8bitLt"}
SMALL = {  # every parameter group non-trivial on the tiny backbones
    "pt": {"num_tokens": 4}, "dept": {"num_tokens": 4, "max_length": 64}, "adept": {"num_tokens": 4, "dropout": 0.0},
    "ept": {"num_tokens": 4, "max_length": 64}, "lamp": {"num_tokens": 8, "rank": 2, "pool": 2},
}


@pytest.fixture(scope="module")
def tiny64(tmp_path_factory) -> dict:
    """Tiny random backbones of width 64: bitsandbytes' CPU 4-bit inference kernel needs input widths of at least
    one quantisation block (64), and the session's width-32 backbones have 32-wide layers."""
    from pipeline.model.tiny import write_tiny_model

    base = tmp_path_factory.mktemp("backbones64")
    return {fam: write_tiny_model(fam, base / f"tiny-{fam}", hidden=64) for fam in ("llama", "t5")}


def _load(dirs, family: str, quantization: str):
    return load_backbone(BackboneConfig(name_or_path=str(dirs[family]), quantization=quantization))


@pytest.fixture(scope="module")
def nf4(tiny64):
    return {fam: _load(tiny64, fam, "nf4") for fam in ("llama", "t5")}


@pytest.mark.parametrize("quantization", ["nf4", "fp4", "int8"])
@pytest.mark.parametrize("family", ["llama", "t5"])
def test_linear_layers_are_quantised_and_smaller(tiny64, family, quantization):
    model, _, info = _load(tiny64, family, quantization)
    full = _load(tiny64, family, "none")[0]
    kinds = {type(m).__name__ for m in model.modules()}
    assert QUANT_LAYERS[quantization] in kinds
    assert info.quantization == quantization
    assert model.get_memory_footprint() < full.get_memory_footprint()
    # the embedding a prompt lives beside is untouched: same rows as the full-precision load
    ids = torch.arange(4, 20)
    torch.testing.assert_close(embedding_rows(model)(ids), embedding_rows(full)(ids))
    assert not any(p.requires_grad for p in model.parameters())


@pytest.mark.parametrize("family", ["llama", "t5"])
@pytest.mark.parametrize("name", methods.names())
def test_every_method_trains_only_its_own_parameters_over_nf4(nf4, name, family):
    model, tok, info = nf4[family]
    cfg = methods.config_class(name)(**SMALL[name])
    method = methods.build(cfg, info, embedding_rows(model), seed=0)
    frozen = {k: v.detach().clone() for k, v in model.state_dict().items()}
    before = {k: v.detach().clone() for k, v in method.state_dict().items()}
    prompted = PromptedModel(model, method, info.is_seq2seq).train()
    opt = torch.optim.AdamW(method.param_groups(), weight_decay=0.0)  # only gradients move tensors
    for _ in range(2):  # zero-initialised up-maps move on step 1, the factors behind them on step 2
        opt.zero_grad()
        loss = prompted(**_batch(tok, info)).loss
        assert torch.isfinite(loss)
        loss.backward()
        opt.step()
    assert all(torch.equal(v, frozen[k]) for k, v in model.state_dict().items())  # packed weights untouched
    still = [k for k, v in method.state_dict().items() if torch.equal(v, before[k])]
    assert not still, f"parameters that two steps over nf4 did not move: {still}"


def test_prompt_round_trips_and_moves_between_quantisations(nf4, tiny64, tmp_path, caplog):
    model, tok, info = nf4["llama"]
    cfg = methods.config_class("dept")(**SMALL["dept"])
    method = methods.build(cfg, info, embedding_rows(model), seed=1)
    with torch.no_grad():
        for p in method.parameters():
            p.add_(0.05 * torch.randn_like(p))
    save_prompt(tmp_path, cfg, method.state_dict(), info, "sst2")
    batch = _batch(tok, info)
    with caplog.at_level(logging.WARNING, logger="promptfarm"):
        same, meta = load_prompt(tmp_path, info)
    assert meta["backbone"]["quantization"] == "nf4" and not caplog.records
    with torch.no_grad():
        a = PromptedModel(model, method, False).eval()(**batch).logits
        b = PromptedModel(model, same, False).eval()(**batch).logits
    assert torch.equal(a, b)
    full_model, _, full_info = _load(tiny64, "llama", "none")
    with caplog.at_level(logging.WARNING, logger="promptfarm"):
        moved, _ = load_prompt(tmp_path, full_info)
    (record,) = caplog.records
    assert "quantised 'nf4'; loading it over one quantised 'none'" in record.getMessage()
    assert "\n" not in record.getMessage()
    with torch.no_grad():
        c = PromptedModel(full_model, moved, False).eval()(**batch).logits
    assert c.shape == a.shape and not torch.equal(c, a)  # really another backbone, same prompt tensors
    assert all(torch.equal(x, y) for x, y in zip(moved.state_dict().values(), same.state_dict().values(),
                                                 strict=True))


def test_zero3_over_a_quantised_backbone_is_refused_at_config_load():
    smoke = ROOT / "jobs" / "configs" / "smoke.yaml"
    with pytest.raises(ConfigError) as e:
        load_config(smoke, ["backbone.quantization=nf4", "train.zero_stage=3"])
    msg = str(e.value)
    assert msg.startswith("backbone.quantization='nf4' with train.zero_stage=3: ZeRO-3 partitions every weight")
    assert "expected train.zero_stage=2" in msg and "\n" not in msg
    assert load_config(smoke, ["backbone.quantization=nf4"]).backbone.quantization == "nf4"
    with pytest.raises(ConfigError, match=r"backbone.quantization='nf8' is not allowed; expected one of"):
        load_config(smoke, ["backbone.quantization=nf8"])


@pytest.mark.parametrize("quantization", ["nf4", "int8"])
def test_deepspeed_zero2_engine_trains_over_a_quantised_backbone(tiny64, gloo_world, quantization):
    """The trial's own pieces (DeepSpeed ZeRO-2 engine, batches, train_step) over a quantised backbone: the loss
    falls over 6 steps on the fixture and only the method's tensors change."""
    from pipeline.train.ds_config import ds_config
    from pipeline.train.loop import batches, build_engine, train_step

    cfg = load_config(ROOT / "jobs" / "configs" / "smoke.yaml", [
        f"backbone.name_or_path={tiny64['llama']}", f"backbone.quantization={quantization}", "train.max_steps=6",
        "train.batch_size=4", "method={name: pt, num_tokens: 4, lr: 0.3}", "train.lr_units=absolute"])
    assert ds_config(cfg.train, cfg.backbone.dtype)["zero_optimization"]["stage"] == 2
    model, tok, info = load_backbone(cfg.backbone)
    frozen = {k: v.detach().clone() for k, v in model.state_dict().items()}
    method = methods.build(cfg.method, info, embedding_rows(model), seed=0)
    init = method.prompt.detach().clone()
    engine = build_engine(cfg, PromptedModel(model, method, False), method, 0)
    task = get_task("sst2")
    ex = load_examples(task, "train", str(FIXTURES / "sst2_tiny" / "train.tsv"), None, 0)
    stream = batches(Encoder(tok, False, Encoding(64, 8, "")).examples(task, ex), 4, tok.pad_token_id, 0)
    losses = [x for step in range(1, 7) for x in train_step(engine, stream, 1, "cpu", step, 1)]
    assert all(torch.isfinite(torch.tensor(losses)))
    assert sum(losses[-2:]) < sum(losses[:2])
    assert not torch.equal(method.prompt.detach(), init)
    assert all(torch.equal(v, frozen[k]) for k, v in model.state_dict().items())


def test_a_missing_bitsandbytes_is_a_one_line_preflight_error(monkeypatch, tiny_dirs):
    import importlib.util

    from pipeline.preflight import PreflightError, check_backbone

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "bitsandbytes" else real(n, *a))
    b = dataclasses.replace(BackboneConfig(name_or_path=str(tiny_dirs["llama"])), quantization="fp4")
    with pytest.raises(PreflightError, match=r"backbone.quantization='fp4' needs the bitsandbytes package; expected"):
        check_backbone(b)



@pytest.mark.parametrize("batch_rows", [1, 3])
def test_prompt_gradient_over_nf4_equals_float32_over_the_dequantised_weights(tiny64, batch_rows):
    """Gradients reach the prompt through bitsandbytes' 4-bit matmuls exactly as through float32 layers holding the
    de-quantised weights (same loss, same prompt gradient); one-row batches take bitsandbytes' other kernel path."""
    import bitsandbytes.functional as bnbf

    q_model, tok, info = _load(tiny64, "llama", "nf4")
    f_model, _, _ = _load(tiny64, "llama", "none")
    with torch.no_grad():
        for name, mod in q_model.named_modules():
            if type(mod).__name__ == "Linear4bit":
                w = mod.weight
                f_model.get_submodule(name).weight.copy_(bnbf.dequantize_4bit(w.data, w.quant_state).float())
    cfg = methods.config_class("pt")(num_tokens=4)
    batch = {k: v[:batch_rows] for k, v in _batch(tok, info).items()}
    out = []
    for model in (q_model, f_model):
        method = methods.build(cfg, info, embedding_rows(model), seed=0)
        loss = PromptedModel(model, method, False).train()(**batch).loss
        loss.backward()
        out.append((loss.detach(), method.prompt.grad.clone()))
    (lq, gq), (lf, gf) = out
    assert gq.abs().sum() > 0
    torch.testing.assert_close(lq, lf, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(gq, gf, rtol=1e-3, atol=1e-6)
