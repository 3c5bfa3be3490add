"""EPT (pipeline.methods.ept) and LAMP (pipeline.methods.lamp): parameter formulas, degenerate equivalences
(EPT -> DePT, full-rank LAMP -> PT), fusion / gate / pooling semantics, config errors, and training through a
PromptedModel on tiny LLaMA and T5 backbones (CPU)."""

import dataclasses
import math

import pytest
import torch

from pipeline import methods
from pipeline.config import ConfigError, load_config
from pipeline.methods.base import PromptBatch, count_trainable
from pipeline.methods.dept import DePT, DePTConfig
from pipeline.methods.ept import EPT, EPTConfig, resolve_rank
from pipeline.methods.lamp import LAMP, LAMPConfig
from pipeline.methods.pt import PromptTuning, PTConfig
from pipeline.model.backbone import embedding_rows
from pipeline.model.prompted import PromptedModel
from tests.method_helpers import (
    HIDDEN,
    VOCAB,
    assert_batches_equal,
    assert_save_load_roundtrip,
    embed_batch,
    make_info,
)


# --------------------------------------------------------------------------------------------- parameter budgets
def test_ept_default_budget_at_t5_base():
    cfg, info = EPTConfig(), make_info(768, True)
    # 60*768 + 15*(256+768) + 4*2*768*2 + 768*4 = 46,080 + 15,360 + 12,288 + 3,072
    assert resolve_rank(cfg, 768) == 15
    assert EPT.paper_param_count(cfg, info) == 76_800 == 100 * 768
    method = EPT(cfg, info, None, 0)
    assert method.proj_down.shape == (4, 768, 2) and method.proj_up.shape == (4, 2, 768)
    assert method.gate_w.shape == (768, 4) and method.lowrank_b.shape == (15, 768)
    assert count_trainable(method) == 76_800


@pytest.mark.parametrize("d", [32, 64, 768, 1024])
@pytest.mark.parametrize(("m", "n", "k"), [(60, 4, 2), (40, 2, 2), (20, 1, 3), (60, 3, 0)])
def test_ept_auto_rank_is_largest_within_budget(d, m, n, k):
    cfg, info = EPTConfig(num_tokens=m, num_spaces=n, space_rank=k), make_info(d)
    assert EPT.paper_param_count(cfg, info) <= 100 * d
    cfg.rank = resolve_rank(cfg, d) + 1
    assert EPT.paper_param_count(cfg, info) > 100 * d


@pytest.mark.parametrize("cfg", [EPTConfig(),
                                 EPTConfig(num_tokens=5, rank=3, max_length=16, num_spaces=3, space_rank=4),
                                 EPTConfig(num_tokens=5, rank=2, num_spaces=1, space_rank=3),
                                 EPTConfig(num_tokens=5, rank=2, num_spaces=3, space_rank=0),
                                 LAMPConfig(), LAMPConfig(num_tokens=12, rank=5, pool=3, interactions=True)])
@pytest.mark.parametrize("d", [HIDDEN, 768])
def test_trainable_count_matches_paper_formula(cfg, d):
    info = make_info(d)
    method = methods.build(cfg, info)
    assert count_trainable(method) == type(method).paper_param_count(cfg, info) > 0
    if isinstance(cfg, EPTConfig):  # one space or rank 0: nothing to gate, no gate parameters
        assert (method.gate_w is None) == (cfg.num_spaces == 1 or cfg.space_rank == 0)
        r = resolve_rank(cfg, d)
        gate = d * cfg.num_spaces if method.gate_w is not None else 0
        assert count_trainable(method) == (cfg.num_tokens * d + r * (cfg.max_length + d)
                                           + cfg.num_spaces * 2 * d * cfg.space_rank + gate)
    else:
        pairs = cfg.rank * (cfg.rank - 1) // 2 if cfg.interactions else 0
        assert count_trainable(method) == cfg.rank * (cfg.num_tokens + d + 1) + pairs


def test_lamp_default_count_and_tokens():
    cfg = LAMPConfig()
    # T5-Base: r(l + d + 1) factors, the ~7K the paper reports (PT: 76,800); interactions add r(r-1)/2 weights
    assert not cfg.interactions  # off by default: no source describes the pairwise term
    assert LAMP.paper_param_count(cfg, make_info(768, True)) == 6_952 == 8 * (100 + 768 + 1)
    assert count_trainable(LAMP(cfg, make_info(768, True), None, 0)) == 6_952
    paired = LAMPConfig(interactions=True)
    assert count_trainable(LAMP(paired, make_info(768, True), None, 0)) == LAMP.paper_param_count(paired, make_info(
        768, True)) == 6_980 == 6_952 + 28
    assert LAMP.num_virtual_tokens(cfg) == 50 and LAMP.num_virtual_tokens(LAMPConfig(pool=4)) == 25


def test_registry_config_and_search_space():
    from pipeline.tune.space import search_space

    for name, cls, key, value in [("ept", EPT, "num_spaces", 3), ("lamp", LAMP, "rank", 7)]:
        assert methods.get(name).module_cls is cls
        cfg = load_config(None, [f"method.name={name}", f"method.{key}={value}"])
        assert cfg.method_name == name and getattr(cfg.method, key) == value
        assert set(search_space(cfg)) == set(cls.search_space())  # every key/value yields a valid config
    with pytest.raises(ConfigError, match="method.num_spaces"):
        load_config(None, ["method.name=ept", "method.num_spaces=0"])
    with pytest.raises(ConfigError, match="method.fusion"):
        load_config(None, ["method.name=ept", "method.fusion=3"])


# --------------------------------------------------------------------------------------------------- config errors
def test_lamp_pool_must_divide_length():
    divisors = r"\[1, 2, 4, 5, 10, 20, 25, 50, 100\]"
    with pytest.raises(ConfigError, match=r"lamp: pool=3 does not divide num_tokens=100.*" + divisors):
        load_config(None, ["method.name=lamp", "method.pool=3"])
    cfg = LAMPConfig(num_tokens=12, pool=4)
    cfg.pool = 5  # mutated after construction: caught when the method is built
    with pytest.raises(ConfigError, match="pool=5 does not divide num_tokens=12"):
        LAMP(cfg, make_info(HIDDEN), None, 0)
    with pytest.raises(ConfigError, match=r"rank=33 must be in \[1, min\(num_tokens=100, hidden_size=32\)=32\]"):
        LAMP(LAMPConfig(rank=33), make_info(HIDDEN), None, 0)


# ----------------------------------------------------------------------------------------------- EPT semantics
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_ept_one_space_no_fusion_is_dept(backbone, dtype):
    model, info = backbone
    rows = embedding_rows(model)
    kw = {"num_tokens": 5, "rank": 3, "max_length": 8}
    ept = EPT(EPTConfig(**kw, fusion=False, num_spaces=1, space_rank=2), info, rows, 7)
    dept = DePT(DePTConfig(**kw), info, rows, 7)
    for name in ("prompt", "lowrank_a", "lowrank_b"):  # identical init
        assert torch.equal(getattr(ept, name), getattr(dept, name)), name
    assert ept.scaling == dept.scaling and ept.gate_w is None
    with torch.no_grad():  # same non-trivial shared parameters, projection up-map still zero
        for p_e, p_d in ((ept.prompt, dept.prompt), (ept.lowrank_b, dept.lowrank_b)):
            p_d.add_(torch.randn_like(p_d))
            p_e.copy_(p_d)
    batch = embed_batch(model, torch.randint(4, VOCAB, (2, 11)), info.is_seq2seq, dtype)
    assert_batches_equal(ept(batch), dept(batch))
    assert ept(batch).inputs_embeds.dtype == dtype
    with torch.no_grad():  # a non-zero projection makes it differ
        ept.proj_up.normal_()
    assert not torch.allclose(ept(batch).inputs_embeds[:, :5].float(), dept(batch).inputs_embeds[:, :5].float())


def test_ept_default_equals_dept_at_init(backbone):
    model, info = backbone
    rows = embedding_rows(model)
    ept = EPT(EPTConfig(num_tokens=4, rank=3, max_length=8), info, rows, 2)  # fusion on, 4 spaces, gate
    dept = DePT(DePTConfig(num_tokens=4, rank=3, max_length=8), info, rows, 2)
    batch = embed_batch(model, torch.randint(4, VOCAB, (2, 9)), info.is_seq2seq)
    assert_batches_equal(ept(batch), dept(batch))  # B = 0 and U_k = 0: fusion and projection add exactly 0


def test_ept_fusion_formula():
    d = HIDDEN
    ept = EPT(EPTConfig(num_tokens=3, rank=4, max_length=6, num_spaces=1, space_rank=0), make_info(d), None, 0)
    with torch.no_grad():
        ept.prompt.normal_()
        ept.lowrank_b.normal_()
    p, b = ept.prompt.detach(), ept.lowrank_b.detach()
    unit = math.sqrt(d) * p.pow(2).mean().sqrt() * b.pow(2).mean().sqrt()  # logits of unit-RMS P and B
    expected = torch.stack([p[i] + sum(torch.softmax(b @ p[i] / unit, 0)[j] * b[j] for j in range(4))
                            for i in range(3)])
    torch.testing.assert_close(ept.fused_prompt().detach(), expected)
    torch.testing.assert_close(ept.joint_prompt().detach(), expected)  # k = 0: no projection
    assert not torch.allclose(expected, p)
    ept.cfg.fusion = False
    assert torch.equal(ept.fused_prompt(), ept.prompt)


@pytest.mark.parametrize("composition", ["parallel", "chained"])
def test_ept_gate_and_projection_formula(composition):
    """'parallel' (Figure 2): P* = P + F + M(P), both branches on the short prompt; 'chained': P_f + M(P_f)."""
    cfg = EPTConfig(num_tokens=5, rank=2, max_length=6, num_spaces=3, space_rank=2, composition=composition)
    ept = EPT(cfg, make_info(HIDDEN), None, 0)
    p_f = ept.fused_prompt().detach()
    torch.testing.assert_close(ept.gate_weights(p_f), torch.full((5, 3), 1 / 3))  # W_g = 0: uniform
    with torch.no_grad():
        for t in (ept.prompt, ept.lowrank_b, ept.proj_up, ept.gate_w):
            t.normal_()
    p, p_f = ept.prompt.detach(), ept.fused_prompt().detach()
    src = p if composition == "parallel" else p_f
    g = ept.gate_weights(src).detach()
    assert g.shape == (5, 3) and bool((g > 0).all())
    torch.testing.assert_close(g.sum(-1), torch.ones(5))
    assert not torch.allclose(g, torch.full_like(g, 1 / 3))  # per-token, learned weights
    assert not torch.allclose(g[0], g[1])
    fusion = p_f - p
    assert fusion.abs().max() > 0.1  # B != 0: the fusion branch contributes
    expected = p + fusion + sum(g[:, k:k + 1] * (src @ ept.proj_down[k] @ ept.proj_up[k]) for k in range(3))
    torch.testing.assert_close(ept.joint_prompt().detach(), expected.detach())
    batch = PromptBatch(torch.randn(2, 4, HIDDEN), torch.ones(2, 4, dtype=torch.long), None)
    torch.testing.assert_close(ept(batch).inputs_embeds[:, :5], expected.detach().expand(2, -1, -1))
    other = EPT(dataclasses.replace(cfg, composition="chained" if composition == "parallel" else "parallel"),
                make_info(HIDDEN), None, 0)
    other.load_state_dict(ept.state_dict())
    assert not torch.allclose(other.joint_prompt(), ept.joint_prompt())  # the two readings differ


# ---------------------------------------------------------------------------------------------- LAMP semantics
@pytest.mark.parametrize("length", [6, 40])  # l < d and l > d
def test_lamp_full_rank_no_pool_is_pt(backbone, length):
    model, info = backbone
    rows = embedding_rows(model)
    r = min(length, info.hidden_size)
    lamp = LAMP(LAMPConfig(num_tokens=length, rank=r, pool=1), info, rows, 5)
    pt = PromptTuning(PTConfig(num_tokens=length), info, rows, 5)
    torch.testing.assert_close(lamp.reconstructed().detach(), pt.prompt.detach(), rtol=1e-5, atol=1e-5)
    q = lamp.q.detach()
    assert bool((q[:-1] >= q[1:]).all())  # singular values, descending
    torch.testing.assert_close(lamp.u.T @ lamp.u, torch.eye(r), atol=1e-5, rtol=0)  # orthonormal at init
    batch = embed_batch(model, torch.randint(4, VOCAB, (2, 7)), info.is_seq2seq)
    out, ref = lamp(batch), pt(batch)
    torch.testing.assert_close(out.inputs_embeds, ref.inputs_embeds, rtol=1e-5, atol=1e-5)
    assert torch.equal(out.attention_mask, ref.attention_mask)
    assert (out.labels is None and ref.labels is None) or torch.equal(out.labels, ref.labels)


def test_lamp_interactions_reach_prompts_no_rank_r_reconstruction_can():
    """With trained interaction weights C has rank r(r+1)/2 > r: outside everything U diag(q) V^T (rank <= r) can
    represent at any U, q, V; with w = 0 (the init) it is exactly the rank-r reconstruction."""
    n, d, r = 12, 16, 3
    cfg = LAMPConfig(num_tokens=n, rank=r, pool=1, interactions=True)
    lamp = LAMP(cfg, make_info(d), lambda ids: torch.randn(len(ids), d), 0)
    plain = (lamp.u * lamp.q) @ lamp.v.T
    assert torch.equal(lamp.reconstructed(), plain)  # w starts at zero
    assert torch.linalg.matrix_rank(plain.detach(), rtol=1e-5) == r
    with torch.no_grad():
        lamp.w.normal_()
    c = lamp.reconstructed().detach().double()
    assert torch.linalg.matrix_rank(c, rtol=1e-5) == r * (r + 1) // 2 == 6
    # the best rank-r approximation of C (Eckart-Young: its truncated SVD) misses it by the remaining singular values
    sv = torch.linalg.svdvals(c)
    assert sv[r:].norm() > 1e-3 * sv.norm()
    # and gradients reach w through the prompt
    (lamp.reconstructed() * torch.randn(n, d)).sum().backward()
    assert torch.count_nonzero(lamp.w.grad) == r * (r - 1) // 2


def test_lamp_low_rank_is_truncated_svd(backbone):
    model, info = backbone
    rows = embedding_rows(model)
    lamp = LAMP(LAMPConfig(num_tokens=20, rank=4, pool=1), info, rows, 0)
    p0 = PromptTuning(PTConfig(num_tokens=20), info, rows, 0).prompt.detach()
    c = lamp.reconstructed().detach()
    assert torch.linalg.matrix_rank(c) == 4 and not torch.allclose(c, p0, atol=1e-3)
    s = torch.linalg.svdvals(p0.double())
    err = torch.linalg.matrix_norm((c - p0).double())  # Eckart-Young: error = norm of the dropped singular values
    torch.testing.assert_close(err, s[4:].norm(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("pool", [1, 2, 3, 6])
def test_lamp_pooling_averages_consecutive_rows(backbone, pool):
    model, info = backbone
    lamp = LAMP(LAMPConfig(num_tokens=12, rank=5, pool=pool), info, embedding_rows(model), 0)
    c = lamp.reconstructed().detach()
    pooled = lamp.pooled().detach()
    assert pooled.shape == (12 // pool, info.hidden_size)
    expected = torch.stack([c[i * pool:(i + 1) * pool].sum(0) / pool for i in range(12 // pool)])
    torch.testing.assert_close(pooled, expected)
    if pool > 1:
        assert not torch.allclose(pooled, c[::pool])
    batch = embed_batch(model, torch.randint(4, VOCAB, (2, 5)), info.is_seq2seq, torch.bfloat16)
    out = lamp(batch)
    n = LAMP.num_virtual_tokens(lamp.cfg)
    assert n == 12 // pool and out.inputs_embeds.shape == (2, 5 + n, info.hidden_size)
    assert out.inputs_embeds.dtype == torch.bfloat16
    assert torch.equal(out.inputs_embeds[:, :n], expected.to(torch.bfloat16).expand(2, -1, -1))
    assert bool((out.attention_mask[:, :n] == 1).all()) and torch.equal(out.inputs_embeds[:, n:], batch.inputs_embeds)
    if out.labels is not None:
        assert bool((out.labels[:, :n] == -100).all()) and torch.equal(out.labels[:, n:], batch.labels)


# ------------------------------------------------------------------------------------ training through the model
@pytest.mark.parametrize("cfg", [EPTConfig(num_tokens=4, rank=3, max_length=6, num_spaces=3, space_rank=2),
                                 LAMPConfig(num_tokens=8, rank=4, pool=2, interactions=True)])
def test_prompted_model_trains_only_method_params(backbone, cfg):
    model, info = backbone
    method = methods.build(cfg, info, embedding_rows(model), seed=0)
    prompted = PromptedModel(model, method, info.is_seq2seq).train()
    groups = method.param_groups()
    in_groups = [id(p) for g in groups for p in g["params"]]
    assert sorted(in_groups) == sorted(id(p) for p in method.parameters())  # every param in exactly one group
    assert all(g["name"] and g["lr"] > 0 for g in groups)
    opt = torch.optim.AdamW(groups, weight_decay=0.0)
    ids = torch.randint(4, VOCAB, (2, 9))
    mask = torch.ones_like(ids)
    mask[1, -3:] = 0
    # decoder: 4 source tokens then labels (end-aligned offsets sit on the source)
    labels = torch.randint(4, VOCAB, (2, 3)) if info.is_seq2seq else ids.masked_fill(mask == 0, -100)
    if not info.is_seq2seq:
        labels[:, :4] = -100
    backbone_before = {k: v.clone() for k, v in model.state_dict().items()}
    start = {n: p.detach().clone() for n, p in method.named_parameters()}
    for step in range(2):
        opt.zero_grad()
        loss = prompted(ids, mask, labels).loss
        assert torch.isfinite(loss)
        loss.backward()
        assert all(p.grad is None for p in model.parameters())
        assert all(p.grad is not None for p in method.parameters())
        if step == 0 and isinstance(method, EPT):  # zero-initialised up-maps: their input sides get no gradient
            for name in ("lowrank_a", "proj_down", "gate_w"):
                assert torch.count_nonzero(getattr(method, name).grad) == 0, name
            for name in ("prompt", "lowrank_b", "proj_up"):
                assert torch.count_nonzero(getattr(method, name).grad) > 0, name
        if step == 0 and isinstance(method, LAMP):
            assert all(torch.count_nonzero(p.grad) > 0 for p in method.parameters())
        opt.step()
    for name, p in method.named_parameters():  # after two steps every parameter has moved
        assert not torch.equal(p.detach(), start[name]), name
    assert all(torch.equal(v, backbone_before[k]) for k, v in model.state_dict().items())


@pytest.mark.parametrize("cfg", [EPTConfig(num_tokens=3, budget_tokens=12, max_length=8, num_spaces=2, space_rank=1),
                                 EPTConfig(num_tokens=3, rank=2, max_length=8, num_spaces=1),
                                 LAMPConfig(num_tokens=6, rank=3, pool=3)])
def test_save_load_roundtrip(backbone, cfg, tmp_path):
    assert_save_load_roundtrip(backbone, cfg, tmp_path)
