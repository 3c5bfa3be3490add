"""The sampled-vocabulary prompt init (Lester et al. Sec. 2.2) never copies a tokenizer's special token into a
prompt, and is otherwise unchanged: the same ids as before for a tokenizer without special tokens. The class-label
init (Sec. 3.2) starts one row per label at the mean of its word's token embeddings and fills the rest as 'vocab'."""

from __future__ import annotations

import pytest
import torch

from pipeline.config import BackboneConfig, ConfigError, load_config
from pipeline.data.builtin import get_task
from pipeline.data.encode import Encoder
from pipeline.methods import pt
from pipeline.methods.base import init_from_labels, init_from_vocab
from pipeline.model.backbone import EmbeddingRows, embedding_rows, load_backbone, special_token_ids


class _IdRows:
    """EmbedRows whose row i is [i]: the init's values are the sampled ids."""

    def __init__(self, special=(), labels=()):
        self.special_ids = frozenset(special)
        self.label_ids = labels

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


def test_class_label_rows_are_the_mean_of_each_label_words_tokens_then_vocab():
    rows = init_from_labels(_IdRows(labels=((10, 20), (7,), (1, 2, 3))), 5, 49_152, 1, seed=0).squeeze(-1)
    assert rows[:3].tolist() == [15.0, 7.0, 2.0]  # label order, multi-token words averaged
    assert torch.equal(rows[3:], init_from_vocab(_IdRows(), 2, 49_152, 1, seed=0).squeeze(-1))
    first = init_from_labels(_IdRows(labels=((10, 20), (7,), (1, 2, 3))), 2, 49_152, 1, seed=0).squeeze(-1)
    assert first.tolist() == [15.0, 7.0]  # more labels than prompt tokens: the first n
    with pytest.raises(ValueError, match="init='labels' needs a classification task"):
        init_from_labels(_IdRows(), 4, 49_152, 1, seed=0)


def test_a_pt_prompt_starts_at_its_tasks_label_words(tiny_dirs):
    model, tok, info = load_backbone(BackboneConfig(name_or_path=str(tiny_dirs["llama"])))
    task = get_task("sst2")
    words = Encoder(tok, False).label_tokens(task)
    assert len(words) == 2 and all(words)
    method = pt.PromptTuning(pt.PTConfig(num_tokens=4, init="labels"), info, embedding_rows(model, tok, words), seed=0)
    table = model.get_input_embeddings().weight.detach()
    for row, ids in zip(method.prompt[:2], words, strict=True):
        assert torch.allclose(row, table[ids].mean(0))
    assert Encoder(tok, False).label_tokens(get_task("stsb")) == []  # no labels for a regression task


def test_class_label_init_on_a_generation_task_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match=r"method.init='labels'.*task 'stsb' is regression"):
        load_config(None, ["data.task=stsb", "method.init=labels"])
    with pytest.raises(ConfigError, match=r"search.methods.dept.init='labels'"):
        load_config(None, ["data.task=stsb", "search.methods={dept: {init: labels}}"])
