"""The cached rank-classification scorer equals the plain one (one full row per label) for every method."""

from __future__ import annotations

import pytest
import torch

from pipeline import methods
from pipeline.data.builtin import get_task
from pipeline.data.encode import Encoder, Encoding
from pipeline.evaluation.label_scores import label_scores
from pipeline.model.backbone import embedding_rows
from pipeline.model.prompted import PromptedModel
from tests.method_helpers import positions_through

SOURCES = ["sst2 sentence: a gripping , funny film that never lets up", "sst2 sentence: dull",
           "rte sentence1: A cat sat on the mat. sentence2: An animal sat.", "sst2 sentence: the acting is fine"]


@pytest.mark.parametrize("name", methods.names())
def test_cached_scores_equal_plain_scores(backbones, name):
    model, tok, info = backbones["llama"]
    method = methods.build(methods.config_class(name)(), info, embedding_rows(model), seed=0)
    with torch.no_grad():  # non-zero offsets everywhere: label positions must get them exactly as in training
        for p in method.parameters():
            p.add_(0.05 * torch.randn_like(p))
    prompted = PromptedModel(model, method, False).eval()
    enc = Encoder(tok, False, Encoding(64, 8, ""))
    # Words of different lengths (1-3 tokens + EOS) exercise the padded continuations.
    for words in (get_task("rte").label_words, ("positive", "not at all good", "ok")):
        with positions_through(model) as seen:
            fast, n_fast = label_scores(prompted, enc, SOURCES, words, torch.device("cpu"))
        slow, n_slow = label_scores(prompted, enc, SOURCES, words, torch.device("cpu"), cached=False)
        assert torch.equal(n_fast, n_slow)
        # The prompt once, each source once (padded to the longest), each word's continuation once per source, not
        # padded to the longest word (words of one length continue together).
        src = max(len(enc.source_ids(s)) for s in SOURCES)
        cont = sum(len(enc.target_ids(w)) - 1 for w in words)
        n, bsz = method.num_virtual_tokens(method.cfg), len(SOURCES)
        assert seen[0] == n + bsz * src + bsz * cont
        torch.testing.assert_close(fast, slow, rtol=1e-4, atol=1e-4)
        assert torch.equal(fast.argmax(-1), slow.argmax(-1))


def test_label_dependent_prefix_falls_back_to_plain_scoring(backbones, monkeypatch):
    """A method whose prompt depends on the label tokens cannot share a prefix: scores stay the plain ones."""
    model, tok, info = backbones["llama"]
    method = methods.build(methods.config_class("pt")(num_tokens=3), info, embedding_rows(model), seed=0)
    base = method.forward

    def peeking(batch):  # adds the mean of the whole row (labels included) to the prompt: prefix differs per label
        out = base(batch)
        return out._replace(inputs_embeds=out.inputs_embeds + batch.inputs_embeds.mean(1, keepdim=True))

    monkeypatch.setattr(method, "forward", peeking)
    prompted = PromptedModel(model, method, False).eval()
    enc = Encoder(tok, False, Encoding(64, 8, ""))
    words = ("positive", "negative")
    fast, _ = label_scores(prompted, enc, SOURCES, words, torch.device("cpu"))
    slow, _ = label_scores(prompted, enc, SOURCES, words, torch.device("cpu"), cached=False)
    torch.testing.assert_close(fast, slow, rtol=1e-5, atol=1e-5)
