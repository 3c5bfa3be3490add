"""Training computes the LM head only at label positions and runs the shared prompt once per batch; the loss and every
method parameter's gradient equal the backbone's own full-sequence loss (the eval path keeps full logits for
scoring)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from pipeline import methods
from pipeline.data.builtin import get_task
from pipeline.data.encode import Encoder, Encoding, collate
from pipeline.model.backbone import embedding_rows
from pipeline.model.prompted import PromptedModel
from tests.method_helpers import positions_through

ROWS = [{"sentence1": "A cat sat on the mat.", "sentence2": "An animal sat.", "label": 0},
        {"sentence1": "It rained all day long in the city.", "sentence2": "It was dry.", "label": 1},
        {"sentence1": "Short.", "sentence2": "Tiny.", "label": 1}]  # rows of different lengths: labels move


def _perturbed(name, info, model):
    cfg = methods.config_class(name)()  # the defaults, without dropout (two forwards must see the same function)
    cfg = dataclasses.replace(cfg, dropout=0.0) if hasattr(cfg, "dropout") else cfg
    method = methods.build(cfg, info, embedding_rows(model), 0)
    with torch.no_grad():  # every parameter non-zero, so every gradient path is live
        for p in method.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return method


def _loss_and_grads(prompted, batch):
    prompted.method.zero_grad()
    out = prompted(**batch)
    out.loss.backward()
    return out, [p.grad.clone() for p in prompted.method.parameters()]


@pytest.mark.parametrize("labels", ["task", "every token"])
@pytest.mark.parametrize("name", methods.names())
def test_label_position_loss_with_a_shared_prompt_equals_full_loss_and_gradient(backbones, name, labels):
    """'task': the label words only; 'every token': a language-modelling loss (as `promptfarm bench` runs), whose
    first target is predicted from the prompt's last position, inside the shared prefix."""
    model, tok, info = backbones["llama"]
    batch = collate(Encoder(tok, False, Encoding(64, 8, "")).examples(get_task("rte"), ROWS), tok.pad_token_id)
    if labels == "every token":
        batch["labels"] = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    torch.manual_seed(0)
    method = _perturbed(name, info, model)
    prompted = PromptedModel(model, method, False).train()
    assert prompted.label_logits_only
    bsz, length = batch["input_ids"].shape
    n = method.num_virtual_tokens(method.cfg)
    with positions_through(model) as seen:
        fast, fast_grads = _loss_and_grads(prompted, batch)
    assert seen[0] == n + bsz * length  # the prompt ran once, not once per row
    assert labels != "task" or fast.logits.shape[1] < length  # task labels: the head ran on a few positions only
    prompted.label_logits_only = False
    with positions_through(model) as seen:
        full, full_grads = _loss_and_grads(prompted, batch)
    assert seen[0] == bsz * (n + length)
    torch.testing.assert_close(fast.loss, full.loss, rtol=1e-5, atol=1e-6)
    for p, g, ref in zip(method.parameters(), fast_grads, full_grads, strict=True):
        # (every token a label: DePT/EPT's end-aligned offsets find no source tokens, so their factors get none)
        assert labels != "task" or ref.abs().max() > 0, f"{name}: a parameter {tuple(p.shape)} got no gradient"
        torch.testing.assert_close(g, ref, rtol=1e-4, atol=1e-7)
    assert prompted.eval()(**batch).logits.shape[1] == full.logits.shape[1]  # eval: every position scored


def test_a_row_dependent_prompt_runs_every_row_in_full(backbones, monkeypatch):
    """A method whose prompt differs per row cannot share it: left undeclared, the loss is the full-sequence one;
    declared shared (PT's class declaration), the forward raises instead of training on row 0's prompt."""
    model, tok, info = backbones["llama"]
    batch = collate(Encoder(tok, False, Encoding(64, 8, "")).examples(get_task("rte"), ROWS), tok.pad_token_id)
    method = _perturbed("pt", info, model)
    base = method.forward
    n = method.num_virtual_tokens(method.cfg)

    def per_row(b):  # adds each row's mean input embedding to its prompt
        out = base(b)
        shift = torch.zeros_like(out.inputs_embeds)
        shift[:, :n] = b.inputs_embeds.mean(1, keepdim=True)
        return out._replace(inputs_embeds=out.inputs_embeds + shift)

    monkeypatch.setattr(method, "forward", per_row)
    prompted = PromptedModel(model, method, False).train()
    with pytest.raises(RuntimeError, match="PromptTuning declares shares_prompt=True, but the rows of its prompt"):
        prompted(**batch)
    monkeypatch.setattr(method, "shares_prompt", False)
    bsz, length = batch["input_ids"].shape
    with positions_through(model) as seen:
        fast, fast_grads = _loss_and_grads(prompted, batch)
    assert seen[0] == bsz * (n + length)
    prompted.label_logits_only = False
    full, full_grads = _loss_and_grads(prompted, batch)
    torch.testing.assert_close(fast.loss, full.loss, rtol=1e-5, atol=1e-6)
    for g, ref in zip(fast_grads, full_grads, strict=True):
        torch.testing.assert_close(g, ref, rtol=1e-4, atol=1e-7)
