"""The shared-prompt fast path of PromptedModel's training loss: taken only for a method that declares its prompt one
tensor shared by every row (`PromptMethod.shares_prompt`), and then with the same loss and gradients as the full
forward. Tiny random LLaMA (conftest's `backbones`), CPU, float32."""

from __future__ import annotations

import contextlib
import copy

import pytest
import torch
from torch import nn

from pipeline import methods
from pipeline.data.builtin import get_task
from pipeline.data.encode import Encoder, Encoding, collate
from pipeline.methods.base import PromptBatch, PromptMethod, prepend_prompt
from pipeline.model.backbone import embedding_rows
from pipeline.model.prompted import PromptedModel, active_dropout, shared_prefix_len
from pipeline.model.zero import hf_zero3

ROWS = [{"sentence1": "A cat sat on the mat.", "sentence2": "An animal sat.", "label": 0},
        {"sentence1": "It rained all day long in the city.", "sentence2": "It was dry.", "label": 1},
        {"sentence1": "Short.", "sentence2": "Tiny.", "label": 1}]  # rows of different lengths


class TwoTables(PromptMethod):
    """Test-only prompt bank: row i gets table i % 2 (two (n, d) parameters), so rows equal in value can still be
    different parameters. Declares nothing: the safe full forward."""

    def __init__(self, first: torch.Tensor, second: torch.Tensor) -> None:
        super().__init__(None, None, None, 0)
        self.first, self.second = nn.Parameter(first.clone()), nn.Parameter(second.clone())

    def forward(self, batch: PromptBatch) -> PromptBatch:
        tables = (self.first, self.second)
        return prepend_prompt(batch, torch.stack([tables[i % 2] for i in range(batch.inputs_embeds.shape[0])]))


class DeclaredTwoTables(TwoTables):
    """The same bank wrongly declaring one shared prompt."""

    shares_prompt = True


def _batch(tok, rows):
    return collate(Encoder(tok, False, Encoding(64, 8, "")).examples(get_task("rte"), rows), tok.pad_token_id)


def _loss_and_grads(prompted, batch):
    prompted.method.zero_grad()
    out = prompted(**batch)
    out.loss.backward()
    return out.loss.detach(), [p.grad.clone() for p in prompted.method.parameters()]


@contextlib.contextmanager
def backbone_calls(model):
    """Counts calls of the backbone's forward (a list holding one total): 1 = full forward, 2 = prefix + rest."""
    calls = [0]
    hook = model.register_forward_pre_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    try:
        yield calls
    finally:
        hook.remove()


def test_an_undeclared_bank_of_equal_tables_gets_the_full_forward_gradient(backbones):
    """Two tables equal in value, used by alternating rows: the values cannot tell them apart, so only the declaration
    decides; undeclared, both tables get the full forward's gradients (the second one non-zero)."""
    model, tok, info = backbones["llama"]
    batch = _batch(tok, ROWS)
    init = 0.1 * torch.randn(4, info.hidden_size, generator=torch.Generator().manual_seed(0))
    prompted = PromptedModel(model, TwoTables(init, init), False).train()
    assert prompted.label_logits_only
    with backbone_calls(model) as calls:
        loss, grads = _loss_and_grads(prompted, batch)
    assert calls[0] == 1  # the full forward, every row's prompt its own
    prompted.label_logits_only = False  # the backbone's own loss over every position
    ref_loss, ref_grads = _loss_and_grads(prompted, batch)
    torch.testing.assert_close(loss, ref_loss, rtol=1e-5, atol=1e-6)
    for g, ref in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(g, ref, rtol=1e-4, atol=1e-7)
    assert ref_grads[1].abs().max() > 0  # table 2 (row 1) learns too


def test_a_declared_prompt_whose_rows_differ_raises(backbones):
    """A method that declares sharing but gives rows different prompts is refused, naming the method."""
    model, tok, info = backbones["llama"]
    gen = torch.Generator().manual_seed(0)
    tables = [0.1 * torch.randn(4, info.hidden_size, generator=gen) for _ in range(2)]
    prompted = PromptedModel(model, DeclaredTwoTables(*tables), False).train()
    with pytest.raises(RuntimeError, match="DeclaredTwoTables declares shares_prompt=True, but the rows of its"):
        prompted(**_batch(tok, ROWS))


def _pt(info, model):
    """PT with 4 perturbed tokens (declares a shared prompt)."""
    method = methods.build(methods.config_class("pt")(num_tokens=4), info, embedding_rows(model), seed=0)
    with torch.no_grad():
        method.prompt.add_(0.05 * torch.randn(method.prompt.shape, generator=torch.Generator().manual_seed(1)))
    return method


def test_a_one_row_batch_shares_the_prompt_with_the_full_forward_loss_and_gradient(backbones):
    """Batch 1 goes through prefix + cache too (2 backbone calls), with the full forward's loss and gradient."""
    model, tok, info = backbones["llama"]
    batch = _batch(tok, ROWS[:1])
    prompted = PromptedModel(model, _pt(info, model), False).train()
    with backbone_calls(model) as calls:
        loss, grads = _loss_and_grads(prompted, batch)
    assert calls[0] == 2
    prompted.label_logits_only = False
    with backbone_calls(model) as calls:
        ref_loss, ref_grads = _loss_and_grads(prompted, batch)
    assert calls[0] == 1
    torch.testing.assert_close(loss, ref_loss, rtol=1e-5, atol=1e-6)
    assert ref_grads[0].abs().max() > 0
    torch.testing.assert_close(grads[0], ref_grads[0], rtol=1e-4, atol=1e-7)


def test_uneven_ranks_make_the_same_backbone_calls(backbones):
    """Two ZeRO-3 ranks whose last batches hold 1 and 3 rows must call the backbone equally often (each call gathers
    shards collectively): both run the prefix, then the rest."""
    model, tok, info = backbones["llama"]
    prompted = PromptedModel(model, _pt(info, model), False).train()
    counts = []
    for rows in (ROWS[:1], ROWS):
        with backbone_calls(model) as calls:
            prompted(**_batch(tok, rows)).loss.backward()
        counts.append(calls[0])
    assert counts == [2, 2]


def _with_attention_dropout(model, p: float):
    """A tiny LLaMA like `model` (same config, fresh weights) whose attention applies dropout p (functionally)."""
    from transformers import AutoModelForCausalLM

    cfg = copy.deepcopy(model.config)
    cfg.attention_dropout = p
    with hf_zero3(None):
        return AutoModelForCausalLM.from_config(cfg).requires_grad_(False)


def test_a_backbone_with_active_dropout_runs_the_full_forward(backbones):
    """Shared, the prompt would get one dropout mask for all rows: a training-mode backbone with attention dropout
    takes the full forward; in eval mode, or with p = 0, the prompt is shared again."""
    model, tok, info = backbones["llama"]
    dropping = _with_attention_dropout(model, 0.1)
    method = _pt(info, model)
    batch = _batch(tok, ROWS)
    prompted = PromptedModel(dropping, method, False).train()
    assert active_dropout(dropping)
    with backbone_calls(dropping) as calls:
        prompted(**batch).loss.backward()
    assert calls[0] == 1
    embedded = method(PromptBatch(dropping.get_input_embeddings()(batch["input_ids"]), batch["attention_mask"]))
    n = method.num_virtual_tokens(method.cfg)
    assert shared_prefix_len(method, dropping, *embedded[:2], n) == 0
    assert shared_prefix_len(method, dropping.eval(), *embedded[:2], n) == n  # eval: dropout off
    still = _with_attention_dropout(model, 0.0).train()
    assert not active_dropout(still) and shared_prefix_len(method, still, *embedded[:2], n) == n
    with backbone_calls(still) as calls:
        PromptedModel(still, method, False).train()(**batch)
    assert calls[0] == 2


def test_active_dropout_reads_dropout_modules_and_config_rates():
    """An nn.Dropout counts while it is in training mode with p > 0; a config rate only while the backbone trains."""
    net = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.1))
    assert active_dropout(net.train()) and not active_dropout(net.eval())
    assert not active_dropout(nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.0)).train())
    net = nn.Linear(2, 2)
    net.config = type("Config", (), {"to_dict": lambda self: {"text_config": {"hidden_dropout": 0.1},
                                                              "classifier_dropout": 0.5}})()
    assert active_dropout(net.train()) and not active_dropout(net.eval())
    net.config.to_dict = lambda: {"layerdrop": 0.0, "classifier_dropout": 0.5, "use_dropout": True}
    assert not active_dropout(net.train())
