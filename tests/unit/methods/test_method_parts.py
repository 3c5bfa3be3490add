"""Each method's own parts (`parts`, `zero_part`): zeroing one removes exactly that part, which is what the
ablation scores ("does the part carry accuracy?")."""

from __future__ import annotations

import pytest
import torch

from pipeline import methods
from pipeline.methods.base import PromptBatch, prepend_prompt
from tests.method_helpers import HIDDEN, VOCAB, make_info

SMALL = {"dept": {"num_tokens": 3, "rank": 2, "max_length": 8},
         "adept": {"num_tokens": 3, "rank": 2, "dropout": 0.0},
         "ept": {"num_tokens": 3, "rank": 2, "max_length": 8, "num_spaces": 2, "space_rank": 2}}


def _trained(name: str):
    """The method with every tensor moved off its (partly zero) init, and a batch (2 rows, 7 tokens)."""
    cfg = methods.config_class(name)(**SMALL.get(name, {}))
    m = methods.build(cfg, make_info(HIDDEN), lambda ids: torch.randn(len(ids), HIDDEN), seed=0).eval()
    with torch.no_grad():
        for p in m.parameters():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())) * 0.3)
    ids = torch.randint(4, VOCAB, (2, 7))
    labels = ids.index_fill(1, torch.tensor([0, 1, 2, 3]), -100)
    return m, PromptBatch(torch.randn(2, 7, HIDDEN), torch.ones_like(ids), labels)


@pytest.mark.parametrize("name", ["dept", "adept"])
def test_zeroing_the_offsets_leaves_the_short_prompt_alone(name):
    m, batch = _trained(name)
    assert m(batch).inputs_embeds[:, 3:].sub(batch.inputs_embeds).abs().max() > 1e-3  # the part acts before
    m.zero_part(m.parts[0])
    assert torch.equal(m(batch).inputs_embeds, prepend_prompt(batch, m.prompt).inputs_embeds)


def test_ept_parts_are_removed_one_at_a_time():
    m, batch = _trained("ept")
    full = m(batch).inputs_embeds
    m.zero_part("offsets")  # inputs as they came, the prompt still fused and projected
    out = m(batch).inputs_embeds
    assert torch.equal(out[:, 3:], batch.inputs_embeds) and torch.allclose(out[:, :3], full[:, :3])
    m.zero_part("projection")  # the fused prompt alone
    torch.testing.assert_close(m(batch).inputs_embeds[0, :3], m.fused_prompt())
    assert not torch.allclose(m.fused_prompt(), m.prompt)
    m.zero_part("fusion")  # the short prompt alone
    assert torch.equal(m(batch).inputs_embeds[0, :3], m.prompt)


@pytest.mark.parametrize("name", methods.names())
def test_an_unknown_part_is_refused_by_name(name):
    m, _ = _trained(name)
    assert set(m.parts) <= {"offsets", "ffn", "fusion", "projection"}
    with pytest.raises(ValueError, match=f"method '{name}' has no part 'gate'; expected one of"):
        m.zero_part("gate")
