"""The sampled-vocabulary prompt init (Lester et al. Sec. 2.2) never copies a tokenizer's special token into a
prompt, and is otherwise unchanged: the same ids as before for a tokenizer without special tokens."""

from __future__ import annotations

import torch

from pipeline.backbone import EmbeddingRows, load_backbone, special_token_ids
from pipeline.config import BackboneConfig
from pipeline.methods.base import init_from_vocab


class _IdRows:
    """EmbedRows whose row i is [i]: the init's values are the sampled ids."""

    def __init__(self, special=()):
        self.special_ids = frozenset(special)

    def __call__(self, ids: torch.Tensor) -> torch.Tensor:
        return ids.float().unsqueeze(-1)


def test_special_ids_are_never_sampled():
    special = set(range(17))  # SmolLM2's 17 chat/code markers sit at ids 0-16
    ids = init_from_vocab(_IdRows(special), 4000, 49_152, 1, seed=0).long().squeeze(-1)
    assert not set(ids.tolist()) & special
    assert ids.min() >= 17 and ids.max() < 5000  # still from the first 5,000 (frequent) ids
    plain = init_from_vocab(_IdRows(), 4000, 49_152, 1, seed=0).long().squeeze(-1)
    assert bool((plain < 17).any())  # without the exclusion they would be drawn (17/5000 per token)
    legacy = torch.randint(0, 5000, (4000,), generator=torch.Generator().manual_seed(0))
    assert torch.equal(plain, legacy)  # no special ids: exactly the draw of earlier versions


def test_a_tokenizers_special_ids_travel_with_its_embedding_rows(tiny_dirs):
    model, tok, _ = load_backbone(BackboneConfig(name_or_path=str(tiny_dirs["llama"])))
    ids = special_token_ids(tok)
    assert {tok.eos_token_id, tok.pad_token_id} <= ids
    rows = EmbeddingRows(model, ids)
    assert rows.special_ids == frozenset(ids)
    assert torch.equal(rows(torch.tensor([3])), model.get_input_embeddings().weight[3:4].detach())
