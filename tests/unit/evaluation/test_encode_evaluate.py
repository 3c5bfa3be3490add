"""Tokenisation per family and evaluation by rank classification / generation."""

from __future__ import annotations

import pytest
import torch

from pipeline import methods
from pipeline.data.builtin import get_task
from pipeline.data.encode import Encoder, Encoding, collate
from pipeline.evaluation.score import evaluate, generate, score_examples
from pipeline.methods.pt import PTConfig
from pipeline.model.backbone import embedding_rows
from pipeline.model.prompted import PromptedModel, sequence_logprob

SST2 = get_task("sst2")
EXAMPLES = [{"sentence": "a gripping , funny film", "label": 1}, {"sentence": "dull and long", "label": 0},
            {"sentence": "the acting is fine", "label": 1}, {"sentence": "a tedious mess", "label": 0}]


def test_decoder_only_labels_cover_target_only(backbones):
    _, tok, info = backbones["llama"]
    enc = Encoder(tok, False, Encoding(64, 8, ""))
    f = enc.pair("sst2 sentence: good", "positive")
    n_src = len(enc.source_ids("sst2 sentence: good"))
    assert f["labels"][:n_src] == [-100] * n_src
    assert f["labels"][n_src:] == f["input_ids"][n_src:] and f["labels"][-1] == tok.eos_token_id
    assert f["input_ids"][0] == tok.bos_token_id


def test_seq2seq_labels_are_decoder_targets(backbones):
    _, tok, _ = backbones["t5"]
    enc = Encoder(tok, True, Encoding(64, 8, ""))
    f = enc.pair("sst2 sentence: good", "positive")
    assert f["input_ids"][-1] == tok.eos_token_id and f["labels"][-1] == tok.eos_token_id
    assert tok.decode(f["labels"], skip_special_tokens=True) == "positive"


def test_truncation_keeps_limit():
    class Tok:
        eos_token_id = 1

        def __call__(self, text, add_special_tokens=True):
            return {"input_ids": list(range(2, 2 + len(text.split()))) + ([1] if add_special_tokens else [])}

    enc = Encoder(Tok(), True, Encoding(5, 3, ""))
    ids = enc.source_ids("a b c d e f g h")
    assert len(ids) == 5 and ids[-1] == 1


def test_collate_pads_right():
    b = collate([{"input_ids": [5, 6, 7], "labels": [-100, 6, 7]}, {"input_ids": [5], "labels": [5]}], pad_id=0)
    assert b["input_ids"].tolist() == [[5, 6, 7], [5, 0, 0]]
    assert b["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert b["labels"].tolist() == [[-100, 6, 7], [5, -100, -100]]


def test_sequence_logprob_matches_manual():
    logits = torch.randn(1, 4, 5)
    labels = torch.tensor([[-100, 2, 3, -100]])
    total, n = sequence_logprob(logits, labels, causal=True)
    lp = torch.log_softmax(logits, -1)
    assert n.item() == 2 and torch.allclose(total, lp[0, 0, 2] + lp[0, 1, 3])


@pytest.mark.parametrize("family", ["llama", "t5"])
def test_batched_scores_equal_unpadded_single_scores(family, backbones):
    """Padding, the prompt offset and label alignment must not change any example's score."""
    model, tok, info = backbones[family]
    method = methods.build(PTConfig(num_tokens=3), info, embedding_rows(model), seed=1)
    pm = PromptedModel(model, method, info.is_seq2seq).eval()
    enc = Encoder(tok, info.is_seq2seq, Encoding(64, 8, ""))
    batched = score_examples(pm, enc, SST2, EXAMPLES, "cpu")
    for ex, (pred, nll, ntok) in zip(EXAMPLES, batched, strict=True):
        scores = []
        for word in SST2.label_words:
            b = collate([enc.pair(SST2.source_text(ex), word)], tok.pad_token_id)
            with torch.no_grad():
                scores.append(sequence_logprob(pm(**b).logits, b["labels"], not info.is_seq2seq))
        assert pred == int(torch.stack([s[0] for s in scores]).argmax())
        gold = scores[ex["label"]]
        assert nll == pytest.approx(-gold[0].item(), rel=1e-4) and ntok == gold[1].item()


@pytest.mark.parametrize("family", ["llama", "t5"])
def test_generate_is_batch_invariant(family, backbones):
    model, tok, info = backbones[family]
    method = methods.build(PTConfig(num_tokens=2), info, embedding_rows(model), seed=2)
    pm = PromptedModel(model, method, info.is_seq2seq).eval()
    enc = Encoder(tok, info.is_seq2seq, Encoding(64, 4, ""))
    sources = ["stsb sentence1: a b sentence2: c", "stsb sentence1: a much longer sentence here sentence2: d"]
    together = generate(pm, enc, sources, "cpu")
    alone = [generate(pm, enc, [s], "cpu")[0] for s in sources]
    assert together == alone


def test_evaluate_reports_task_metrics_and_loss(backbones):
    model, tok, info = backbones["llama"]
    method = methods.build(PTConfig(num_tokens=2), info, embedding_rows(model), seed=0)
    pm = PromptedModel(model, method, info.is_seq2seq).eval()
    enc = Encoder(tok, False, Encoding(64, 8, ""))
    m = evaluate(pm, enc, SST2, EXAMPLES, 3, "cpu")  # batches of 3 over 4 examples: a partial last batch
    assert set(m) == {"val_accuracy", "val_loss"}
    rows = score_examples(pm, enc, SST2, EXAMPLES, "cpu")  # (pred, gold NLL summed, gold tokens) per example
    correct = [pred == ex["label"] for (pred, _, _), ex in zip(rows, EXAMPLES, strict=True)]
    assert m["val_accuracy"] == pytest.approx(sum(correct) / len(EXAMPLES))
    assert m["val_loss"] == pytest.approx(sum(r[1] for r in rows) / sum(r[2] for r in rows), rel=1e-5)
