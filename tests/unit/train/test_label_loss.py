"""Training computes the LM head only at label positions; the loss and the prompt's gradient equal the backbone's
own full-sequence loss (the eval path keeps full logits for scoring)."""

from __future__ import annotations

import torch

from pipeline import methods
from pipeline.backbone import embedding_rows
from pipeline.data.encode import Encoder, collate
from pipeline.data.tasks import get_task
from pipeline.prompted import PromptedModel


def test_label_position_loss_equals_full_loss_and_gradient(backbones):
    model, tok, info = backbones["llama"]
    task = get_task("rte")
    enc = Encoder(tok, False, 64, 8)
    rows = [{"sentence1": "A cat sat on the mat.", "sentence2": "An animal sat.", "label": 0},
            {"sentence1": "It rained all day long in the city.", "sentence2": "It was dry.", "label": 1},
            {"sentence1": "Short.", "sentence2": "Tiny.", "label": 1}]
    batch = collate(enc.examples(task, rows), tok.pad_token_id)  # rows of different lengths: labels move
    method = methods.build(methods.config_class("dept")(num_tokens=3, max_length=64), info, embedding_rows(model), 0)
    with torch.no_grad():
        for p in method.parameters():
            p.add_(0.05 * torch.randn_like(p))
    prompted = PromptedModel(model, method, False).train()
    assert prompted.label_logits_only
    fast = prompted(**batch)
    assert fast.logits.shape[1] < batch["input_ids"].shape[1]  # the head ran on a few positions only
    fast.loss.backward()
    grads = [p.grad.clone() for p in method.parameters()]
    method.zero_grad()
    prompted.label_logits_only = False
    full = prompted(**batch)
    full.loss.backward()
    torch.testing.assert_close(fast.loss, full.loss, rtol=1e-5, atol=1e-6)
    for g, p in zip(grads, method.parameters(), strict=True):
        torch.testing.assert_close(g, p.grad, rtol=1e-4, atol=1e-7)
    assert prompted.eval()(**batch).logits.shape[1] == full.logits.shape[1]  # eval: every position scored
