"""ADePT's values with non-zero FFN weights against a hand computation (reference peft_model.py:1275-1306):
every input position gets e + relu(dropout(e W1 + b1)) W2 + b2, the prompt rows get nothing, and dropout acts on
the r-wide pre-activation in training only."""

import pytest
import torch
import torch.nn.functional as F

from pipeline.methods.adept import ADePT, ADePTConfig
from pipeline.methods.base import PromptBatch
from tests.method_helpers import make_info

D, M, R = 16, 3, 5


def _method(dropout: float, seed: int = 0) -> ADePT:
    method = ADePT(ADePTConfig(num_tokens=M, rank=R, dropout=dropout, init="random"), make_info(D), None, seed)
    gen = torch.Generator().manual_seed(7)
    with torch.no_grad():  # every weight non-zero, so a misplaced term changes the result
        for p in method.parameters():
            p.copy_(torch.randn(p.shape, generator=gen))
    return method


def _batch() -> PromptBatch:
    gen = torch.Generator().manual_seed(3)
    emb = torch.randn(2, 4, D, generator=gen)
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    return PromptBatch(emb, mask, torch.tensor([[5, 6, 7, 8], [5, 6, -100, -100]]))


def _by_hand(method: ADePT, emb: torch.Tensor, keep: torch.Tensor | None, p: float) -> torch.Tensor:
    """[P; E + relu(h) W2 + b2] with h = (E W1 + b1), dropped by `keep` (B, T, r) scaled by 1/(1-p) when given."""
    h = emb @ method.w1 + method.b1  # (B, T, r)
    if keep is not None:
        h = h * keep / (1 - p)
    inputs = emb + F.relu(h) @ method.w2 + method.b2  # (B, T, d)
    return torch.cat([method.prompt.expand(emb.shape[0], -1, -1), inputs], dim=1)


@torch.no_grad()
def test_eval_output_equals_hand_computation_with_prompt_rows_unshifted():
    method, batch = _method(dropout=0.5).eval(), _batch()
    out = method(batch)
    torch.testing.assert_close(out.inputs_embeds, _by_hand(method, batch.inputs_embeds, None, 0.5))
    assert torch.equal(out.inputs_embeds[:, :M], method.prompt.expand(2, -1, -1))  # exactly P: no offset, no dropout
    assert torch.equal(out.attention_mask[:, :M], torch.ones(2, M, dtype=torch.long))
    assert torch.equal(out.attention_mask[:, M:], batch.attention_mask)
    assert torch.equal(out.labels[:, :M], torch.full((2, M), -100)) and torch.equal(out.labels[:, M:], batch.labels)
    # Padding positions get their offset too (the reference offsets every input position; attention masks them).
    pad = out.inputs_embeds[1, M + 2:]
    assert not torch.allclose(pad, batch.inputs_embeds[1, 2:])


@torch.no_grad()
def test_training_dropout_acts_on_the_r_wide_pre_activation_only():
    p = 0.5
    method, batch = _method(dropout=p).train(), _batch()
    torch.manual_seed(11)
    out = method(batch)
    # The same RNG stream drawn for a (B*T, r) dropout mask: a mask over the d-wide offset, the embeddings or the
    # prompt would draw a different number of values and give a different result.
    torch.manual_seed(11)
    keep = F.dropout(torch.ones(2 * 4, R), p=p, training=True).view(2, 4, R) * (1 - p)
    torch.testing.assert_close(out.inputs_embeds, _by_hand(method, batch.inputs_embeds, keep, p))
    assert torch.equal(out.inputs_embeds[:, :M], method.prompt.expand(2, -1, -1))  # no dropout on P
    assert 0 < int(keep.sum()) < keep.numel()  # the mask really dropped some units and kept others
    evaluated = method.eval()(batch).inputs_embeds
    assert not torch.allclose(out.inputs_embeds, evaluated)  # training differs from eval ...
    assert torch.equal(method(batch).inputs_embeds, evaluated)  # ... and eval is deterministic


@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_gradients_reach_every_ffn_weight_and_the_prompt(dropout):
    method, batch = _method(dropout=dropout).train(), _batch()
    out = method(batch)
    (out.inputs_embeds * torch.randn_like(out.inputs_embeds)).sum().backward()
    for name, param in method.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name
