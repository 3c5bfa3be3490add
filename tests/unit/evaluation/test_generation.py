"""Generation tasks and many-label classification: cached decoding equals running the whole sequence each step, the
grouped cached scorer equals scoring every candidate in full, multi-reference metrics come from their libraries,
and the chat template keeps the label after the assistant header."""

from __future__ import annotations

import pytest
import sacrebleu
import torch

from pipeline import methods
from pipeline.data.builtin import task_from
from pipeline.data.encode import Encoder, Encoding
from pipeline.data.metrics import compute_metrics
from pipeline.data.sources import load_examples
from pipeline.evaluation import label_scores as scores_module
from pipeline.evaluation.generate import generate
from pipeline.evaluation.label_scores import label_scores
from pipeline.evaluation.score import _pick, evaluate
from pipeline.model.backbone import embedding_rows
from pipeline.model.prompted import PromptedModel
from tests.conftest import FIXTURES

D2T = FIXTURES / "d2t_tiny"
CPU = torch.device("cpu")
SOURCES = ["name[Aromi], eatType[coffee shop]", "name[Cotto]", "a much longer input: name[Zizzi], priceRange[cheap]"]


def _prompted(backbones, family: str, name: str, seed: int = 0) -> tuple[PromptedModel, object]:
    model, tok, info = backbones[family]
    method = methods.build(methods.config_class(name)(), info, embedding_rows(model), seed=seed)
    with torch.no_grad():  # non-zero offsets everywhere
        for p in method.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return PromptedModel(model, method, info.is_seq2seq).eval(), tok


@pytest.mark.parametrize("name", methods.names())
def test_cached_decoding_equals_the_whole_sequence_every_step(backbones, name, monkeypatch):
    prompted, tok = _prompted(backbones, "llama", name)
    enc = Encoder(tok, False, Encoding(64, 16, " Text:"))
    cached = generate(prompted, enc, SOURCES, CPU, 10, ("eos",))
    monkeypatch.setattr(prompted, "label_logits_only", False)  # the fallback: every step in full
    assert generate(prompted, enc, SOURCES, CPU, 10, ("eos",)) == cached
    assert all(isinstance(t, str) for t in cached) and len(cached) == len(SOURCES)


def test_the_frozen_backbone_decodes_over_the_cache_too(backbones, monkeypatch):
    """NoPrompt hands back the batch's own mask: decoding must still take the cached path (B*S prefix positions,
    then B per step), not fall back to the whole sequence every step, and give the same text."""
    from pipeline.model.prompted import NoPrompt
    from tests.method_helpers import positions_through

    model, tok, _ = backbones["llama"]
    prompted = PromptedModel(model, NoPrompt(), False).eval()
    enc = Encoder(tok, False, Encoding(64, 16, " Text:"))
    with positions_through(model) as seen:
        cached = generate(prompted, enc, SOURCES, CPU, 6, ())
    longest = max(len(enc.source_ids(s)) for s in SOURCES)
    assert seen[0] == len(SOURCES) * (longest + 5)
    monkeypatch.setattr(prompted, "label_logits_only", False)
    assert generate(prompted, enc, SOURCES, CPU, 6, ()) == cached


def test_decoding_stops_at_a_newline_and_at_max_new_tokens(backbones):
    prompted, tok = _prompted(backbones, "llama", "pt")
    enc = Encoder(tok, False, Encoding(64, 16, ""))
    long, short = generate(prompted, enc, SOURCES, CPU, 12, ()), generate(prompted, enc, SOURCES, CPU, 3, ())
    assert all(a.startswith(b) and len(a) > len(b) for a, b in zip(long, short, strict=True))  # greedy: a prefix
    newline_id = tok("\n", add_special_tokens=False)["input_ids"][-1]
    with torch.no_grad():  # make a newline the most likely next token everywhere
        prompted.backbone.lm_head.bias = torch.nn.Parameter(torch.zeros(prompted.backbone.lm_head.out_features))
        prompted.backbone.lm_head.bias[newline_id] = 1e4
    try:
        assert generate(prompted, enc, SOURCES, CPU, 12, ("newline",)) == ["", "", ""]
    finally:
        prompted.backbone.lm_head.bias = None


@pytest.mark.parametrize("name", ["pt", "dept", "adept"])
def test_grouped_cached_scores_of_many_multi_token_labels_equal_full_scoring(backbones, name, monkeypatch):
    prompted, tok = _prompted(backbones, "llama", name)
    enc = Encoder(tok, False, Encoding(64, 16, " Intent:"))
    words = [f"label {w} number {i}" for i, w in enumerate(("card", "lost card", "rate", "top up failed") * 5)]
    monkeypatch.setattr(scores_module, "ROW_BUDGET", 45)  # 20 words: groups of 2 sources (3 sources -> 2 groups)
    fast, n_fast = label_scores(prompted, enc, SOURCES, words, CPU)
    slow, n_slow = label_scores(prompted, enc, SOURCES, words, CPU, cached=False)
    assert fast.shape == (3, 20) and torch.equal(n_fast, n_slow)
    torch.testing.assert_close(fast, slow, rtol=1e-4, atol=1e-4)


def test_sum_and_mean_scoring_differ_only_in_the_length_normalisation():
    logp = torch.tensor([[-3.0, -4.0]])  # word 0: 1 token; word 1: 4 tokens
    ntok = torch.tensor([[1, 4]])
    assert _pick(logp, ntok, "sum").item() == 0 and _pick(logp, ntok, "mean").item() == 1


def test_multi_reference_metrics_come_from_their_libraries():
    task = task_from(str(D2T / "task.yaml"))
    preds = ["There is a coffee shop called Aromi.", "Zizzi is cheap."]
    refs = [["Aromi is a coffee shop.", "There is a coffee shop called Aromi."], ["Zizzi is expensive."]]
    got = compute_metrics(task, preds, refs)
    assert got["bleu"] == pytest.approx(sacrebleu.corpus_bleu(preds, [[r[0] for r in refs],
                                                                       [refs[0][1], None]]).score)
    assert got["exact_match"] == pytest.approx(50.0)  # the first matches its second reference exactly
    assert 50.0 < got["token_f1"] < 100.0 and 50.0 < got["rouge_l"] < 100.0
    single = compute_metrics(task, preds, [[r[0]] for r in refs])
    assert single["bleu"] < got["bleu"]  # the second reference counts


@pytest.mark.parametrize("family", ["llama", "t5"])
def test_a_generation_task_evaluates_with_every_reference(backbones, family):
    prompted, tok = _prompted(backbones, family, "pt")
    task = task_from(str(D2T / "task.yaml"))
    rows = load_examples(task, "validation", str(D2T / "validation.jsonl"))
    enc = Encoder(tok, family == "t5", Encoding(64, 24, " Text:"))
    metrics = evaluate(prompted, enc, task, rows, 2, CPU)
    assert set(metrics) == {"val_bleu", "val_rouge_l", "val_exact_match", "val_token_f1", "val_loss"}
    assert all(0.0 <= v <= 100.0 for k, v in metrics.items() if k != "val_loss") and metrics["val_loss"] > 0


CHAT = ("{% for m in messages %}<s>{{ m['role'] }}\n{{ m['content'] }}</s>{% endfor %}"
        "{% if add_generation_prompt %}<s>assistant\n{% endif %}")


def test_the_chat_template_puts_the_label_after_the_assistant_header_and_keeps_it_when_cutting(backbones):
    _, tok, _ = backbones["llama"]
    with pytest.raises(ValueError, match="data.chat_template=true but the backbone's tokenizer has no chat template"):
        Encoder(tok, False, Encoding(32, 8, " Label :", chat_template=True))
    tok.chat_template = CHAT
    try:
        enc = Encoder(tok, False, Encoding(32, 8, " Label :", chat_template=True))
        header = tok("<s>assistant\n", add_special_tokens=False)["input_ids"]
        pair = enc.pair("a fine film", "positive")
        first_label = pair["labels"].index(next(t for t in pair["labels"] if t != -100))
        assert pair["input_ids"][first_label - len(header): first_label] == header
        assert pair["labels"][first_label:] == tok("positive", add_special_tokens=False)["input_ids"] + [
            tok.eos_token_id]
        long = enc.source_ids("word " * 200)
        assert len(long) == 32 and long[-len(header):] == header and enc.source_truncated("word " * 200)
        assert not enc.source_truncated("a fine film")
    finally:
        tok.chat_template = None
