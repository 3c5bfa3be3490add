"""DePT (pipeline.methods.dept) and ADePT (pipeline.methods.adept): budgets, degenerate equivalence with PT,
offset semantics, and training through a PromptedModel on tiny LLaMA and T5 backbones (CPU)."""

import math

import pytest
import torch

from pipeline import methods
from pipeline.config import ConfigError, load_config
from pipeline.methods.adept import ADePT, ADePTConfig
from pipeline.methods.adept import resolve_rank as adept_rank
from pipeline.methods.base import PromptBatch, count_trainable
from pipeline.methods.dept import DePT, DePTConfig
from pipeline.methods.dept import resolve_rank as dept_rank
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
@pytest.mark.parametrize(("m", "r"), [(60, 30), (40, 45), (80, 15), (100, 0)])
def test_dept_equal_budget_at_t5_base(m, r):
    cfg, info = DePTConfig(num_tokens=m), make_info(768, True)
    assert DePT.paper_param_count(cfg, info) == 76_800 == 100 * 768
    method = DePT(cfg, info, None, 0)
    assert method.lowrank_a.shape == (256, r) and method.lowrank_b.shape == (r, 768)
    assert count_trainable(method) == 76_800


def test_adept_budget_at_t5_base():
    cfg, info = ADePTConfig(), make_info(768, True)
    assert ADePT.paper_param_count(cfg, info) == 60 * 768 + 19 * (2 * 768 + 1) + 768 == 76_051
    method = ADePT(cfg, info, None, 0)
    assert method.w1.shape == (768, 19) and method.w2.shape == (19, 768)
    assert count_trainable(method) == 76_051 <= 76_800
    assert ADePT.paper_param_count(ADePTConfig(rank=20), info) > 76_800  # 19 is the largest r within budget
    assert [adept_rank(ADePTConfig(num_tokens=m), 768) for m in (80, 60, 40, 20, 0)] == [9, 19, 29, 39, 49]


@pytest.mark.parametrize(("cls", "resolve"), [(DePT, dept_rank), (ADePT, adept_rank)])
@pytest.mark.parametrize("d", [32, 64, 768, 1024, 4096])
@pytest.mark.parametrize("m", [0, 20, 60, 80])
def test_auto_rank_is_largest_within_budget(cls, resolve, d, m):
    cfg = (DePTConfig if cls is DePT else ADePTConfig)(num_tokens=m)  # rank=None: derived from the budget
    info = make_info(d)
    assert cls.paper_param_count(cfg, info) <= 100 * d
    cfg.rank = resolve(cfg, d) + 1
    assert cls.paper_param_count(cfg, info) > 100 * d


@pytest.mark.parametrize("cfg", [DePTConfig(), DePTConfig(num_tokens=5, rank=3, max_length=16), ADePTConfig(),
                                 ADePTConfig(num_tokens=7, rank=4)])
def test_trainable_count_matches_paper_formula(cfg):
    info = make_info(HIDDEN)
    method = methods.build(cfg, info)
    assert count_trainable(method) == type(method).paper_param_count(cfg, info)
    assert type(method).num_virtual_tokens(cfg) == cfg.num_tokens


def test_registry_config_and_search_space():
    from pipeline.tune.space import search_space

    for name, cls in [("dept", DePT), ("adept", ADePT)]:
        assert methods.get(name).module_cls is cls
        cfg = load_config(None, [f"method.name={name}", "method.rank=7"])
        assert cfg.method.rank == 7 and cfg.method_name == name
        assert set(search_space(cfg)) == set(cls.search_space())  # every key/value yields a valid config
    with pytest.raises(ConfigError, match="method.rank"):
        load_config(None, ["method.name=dept", "method.rank=-1"])
    with pytest.raises(ConfigError, match="method.dropout"):
        load_config(None, ["method.name=adept", "method.dropout=1.5"])


# ---------------------------------------------------------------------------------- degenerate cases and offsets
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("cls", [DePT, ADePT])
def test_zero_init_equals_pt(backbone, cls, dtype):
    model, info = backbone
    rows = embedding_rows(model)
    cfg = DePTConfig(num_tokens=6, max_length=8) if cls is DePT else ADePTConfig(num_tokens=6)
    method, pt = cls(cfg, info, rows, 3).train(), PromptTuning(PTConfig(num_tokens=6), info, rows, 3)
    assert torch.equal(method.prompt, pt.prompt)
    batch = embed_batch(model, torch.randint(4, VOCAB, (2, 11)), info.is_seq2seq, dtype)
    assert_batches_equal(method(batch), pt(batch))
    assert method(batch).inputs_embeds.dtype == dtype


def test_dept_offset_only_on_first_s_positions(backbone):
    """align='start' (the reference's encoder path, the T5 default): row i of A B goes to input position i."""
    model, info = backbone
    m, s = 3, 4
    method = DePT(DePTConfig(num_tokens=m, rank=2, max_length=s, align="start"), info, embedding_rows(model), 0)
    with torch.no_grad():
        method.lowrank_b.normal_()
    batch = embed_batch(model, torch.randint(4, VOCAB, (2, 7)), info.is_seq2seq)
    out = method(batch).inputs_embeds
    expected = method.scaling * (method.lowrank_a @ method.lowrank_b)  # (s, d)
    assert method.scaling == pytest.approx(8 / math.sqrt(2))
    torch.testing.assert_close(out[:, m:m + s], batch.inputs_embeds[:, :s] + expected)
    assert not torch.equal(out[:, m:m + s], batch.inputs_embeds[:, :s])
    assert torch.equal(out[:, m + s:], batch.inputs_embeds[:, s:])  # positions >= s untouched
    assert torch.equal(out[:, :m], method.prompt.detach().unsqueeze(0).expand(2, -1, -1))
    short = embed_batch(model, torch.randint(4, VOCAB, (2, 2)), info.is_seq2seq)  # L < s: first L rows of A B
    torch.testing.assert_close(method(short).inputs_embeds[:, m:], short.inputs_embeds + expected[:2])


def test_dept_end_aligned_offsets_count_back_from_the_last_source_token():
    """align='end' (the decoder default, as the reference's left-padded "<source> Label : " path): the last source
    token of every row gets row s-1 whatever the row's length; label tokens and padding get no offset."""
    info = make_info(HIDDEN)
    m, s = 2, 4
    method = DePT(DePTConfig(num_tokens=m, rank=2, max_length=s), info, lambda ids: torch.randn(len(ids), HIDDEN), 0)
    assert method.align == "end"
    with torch.no_grad():
        method.lowrank_b.normal_()
    table = method.scaling * (method.lowrank_a @ method.lowrank_b)  # (s, d)
    emb = torch.randn(2, 8, HIDDEN)
    mask = torch.ones(2, 8, dtype=torch.long)
    mask[1, -2:] = 0  # right padding
    labels = torch.full((2, 8), -100)
    labels[0, 6:] = 5  # row 0: 6 source tokens (longer than s), 2 label tokens
    labels[1, 2:6] = 5  # row 1: 2 source tokens (shorter than s), 4 label tokens, 2 pads
    out = method(PromptBatch(emb, mask, labels)).inputs_embeds[:, m:]
    expected = emb.clone()
    expected[0, 2:6] += table  # the last s of its 6 source tokens
    expected[1, 0:2] += table[2:]  # rows s-2, s-1
    torch.testing.assert_close(out, expected)


def test_adept_offset_formula_and_dropout(backbone):
    model, info = backbone
    method = ADePT(ADePTConfig(num_tokens=2, rank=5, dropout=0.5), info, embedding_rows(model), 0)
    with torch.no_grad():
        method.w2.normal_()
        method.b1.fill_(0.1)
        method.b2.normal_()
    batch = embed_batch(model, torch.randint(4, VOCAB, (2, 6)), info.is_seq2seq)
    e = batch.inputs_embeds
    expected = e + torch.relu(e @ method.w1 + method.b1) @ method.w2 + method.b2
    method.eval()
    out = method(batch).inputs_embeds
    torch.testing.assert_close(out[:, 2:], expected)  # eval: no dropout, every position (pads too) offset
    method.train()
    torch.manual_seed(0)
    assert not torch.allclose(method(batch).inputs_embeds, out)  # dropout active in training


def test_dept_offset_is_positional_adept_offset_is_per_token(backbone):
    model, info = backbone
    rows = embedding_rows(model)
    dept = DePT(DePTConfig(num_tokens=1, rank=3, max_length=8), info, rows, 0)
    adept = ADePT(ADePTConfig(num_tokens=1, rank=3, dropout=0.0), info, rows, 0)
    with torch.no_grad():
        dept.lowrank_b.normal_()
        adept.w2.normal_()
    ids = torch.tensor([[10, 10, 20], [20, 10, 10]])  # token 10 at positions 0, 1 (row 0); 20 at position 0 (row 1)
    batch = PromptBatch(model.get_input_embeddings()(ids).detach(), torch.ones_like(ids), None)

    def offsets(method):
        return method(batch).inputs_embeds[:, 1:] - batch.inputs_embeds

    d_off, a_off = offsets(dept), offsets(adept)
    # DePT: same token, different positions -> different offsets; different tokens, same position -> same offset.
    assert not torch.allclose(d_off[0, 0], d_off[0, 1])
    torch.testing.assert_close(d_off[0, 0], d_off[1, 0])
    # ADePT: different tokens -> different offsets; same token anywhere -> same offset.
    assert not torch.allclose(a_off[0, 0], a_off[1, 0])
    torch.testing.assert_close(a_off[0, 0], a_off[0, 1])
    torch.testing.assert_close(a_off[0, 0], a_off[1, 2])


# ------------------------------------------------------------------------------------ training through the model
@pytest.mark.parametrize("cfg", [DePTConfig(num_tokens=4, rank=3, max_length=6), ADePTConfig(num_tokens=4, rank=3)])
def test_prompted_model_trains_only_method_params(backbone, cfg):
    model, info = backbone
    method = methods.build(cfg, info, embedding_rows(model), seed=0)
    prompted = PromptedModel(model, method, info.is_seq2seq).train()
    groups = method.param_groups()
    assert len(groups) == 3 and len({g["lr"] for g in groups}) == 2 and all(g["name"] for g in groups)
    in_groups = [id(p) for g in groups for p in g["params"]]
    assert sorted(in_groups) == sorted(id(p) for p in method.parameters())  # every param in exactly one group
    opt = torch.optim.AdamW(groups, weight_decay=0.0)  # the reference's effective weight decay is 0
    assert [g["lr"] for g in opt.param_groups] == [g["lr"] for g in groups]
    ids = torch.randint(4, VOCAB, (2, 9))
    mask = torch.ones_like(ids)
    mask[1, -3:] = 0
    # decoder: 4 source tokens then labels (end-aligned offsets sit on the source)
    labels = torch.randint(4, VOCAB, (2, 3)) if info.is_seq2seq else ids.masked_fill(mask == 0, -100)
    if not info.is_seq2seq:
        labels[:, :4] = -100
    backbone_before = {k: v.clone() for k, v in model.state_dict().items()}
    start = {n: p.detach().clone() for n, p in method.named_parameters()}
    up_proj = "lowrank_b" if isinstance(method, DePT) else "w2"
    for step in range(2):
        opt.zero_grad()
        loss = prompted(ids, mask, labels).loss
        assert torch.isfinite(loss)
        loss.backward()
        assert all(p.grad is None for p in model.parameters())
        assert all(p.grad is not None for p in method.parameters())
        if step == 0:  # zero-initialised up-projection: its input side gets no gradient on the first step
            down = ["lowrank_a"] if isinstance(method, DePT) else ["w1", "b1"]
            assert all(torch.count_nonzero(getattr(method, n).grad) == 0 for n in down)
            assert torch.count_nonzero(getattr(method, up_proj).grad) > 0
        opt.step()
    for name, p in method.named_parameters():
        assert not torch.equal(p.detach(), start[name]), name
    assert all(torch.equal(v, backbone_before[k]) for k, v in model.state_dict().items())


@pytest.mark.parametrize("cfg", [DePTConfig(num_tokens=3, rank=None, budget_tokens=6, max_length=8),
                                 ADePTConfig(num_tokens=3, rank=None, budget_tokens=8)])
def test_save_load_roundtrip(backbone, cfg, tmp_path):
    assert_save_load_roundtrip(backbone, cfg, tmp_path)
