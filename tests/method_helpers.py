"""Helpers shared by the per-method test files (their `backbone` fixture lives in conftest.py)."""

import contextlib

import torch

from pipeline import methods
from pipeline.artifact import load_prompt, save_prompt
from pipeline.methods.base import BackboneInfo, PromptBatch
from pipeline.model.backbone import embedding_rows

VOCAB, HIDDEN = 300, 32


def make_info(d: int, is_seq2seq: bool = False) -> BackboneInfo:
    return BackboneInfo("tiny", None, "t5" if is_seq2seq else "llama", is_seq2seq, d, VOCAB, 2)


def embed_batch(model, ids: torch.Tensor, is_seq2seq: bool, dtype=torch.float32) -> PromptBatch:
    mask = torch.ones_like(ids)
    mask[0, -2:] = 0  # some right padding
    labels = None if is_seq2seq else ids.masked_fill(mask == 0, -100)
    return PromptBatch(model.get_input_embeddings()(ids).detach().to(dtype), mask, labels)


def assert_batches_equal(a: PromptBatch, b: PromptBatch) -> None:
    assert torch.equal(a.inputs_embeds, b.inputs_embeds)
    assert torch.equal(a.attention_mask, b.attention_mask)
    assert (a.labels is None and b.labels is None) or torch.equal(a.labels, b.labels)


def assert_save_load_roundtrip(backbone, cfg, tmp_path) -> None:
    """A perturbed method saved and loaded back rewrites a batch identically (derived sizes such as rank=None too)."""
    model, info = backbone
    method = methods.build(cfg, info, embedding_rows(model), seed=1)
    with torch.no_grad():
        for p in method.parameters():
            p.add_(torch.randn_like(p))
    save_prompt(tmp_path, cfg, method.state_dict(), info, "sst2")
    loaded, _ = load_prompt(tmp_path, info)
    batch = embed_batch(model, torch.randint(4, VOCAB, (2, 10)), info.is_seq2seq)
    assert_batches_equal(loaded.eval()(batch), method.eval()(batch))


@contextlib.contextmanager
def positions_through(model):
    """Counts token positions entering the backbone's first decoder layer (a list holding one total)."""
    seen = [0]
    hook = model.model.layers[0].register_forward_pre_hook(
        lambda _m, args, kwargs: seen.__setitem__(0, seen[0] + (args[0] if args else kwargs["hidden_states"])
                                                  .shape[:2].numel()), with_kwargs=True)
    try:
        yield seen
    finally:
        hook.remove()
