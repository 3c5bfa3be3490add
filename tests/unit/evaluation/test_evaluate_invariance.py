"""Evaluation that a wrong batching, padding or sharding would change: every method (the position-dependent DePT,
ADePT and EPT included) scores each example the same batched as alone, the reported loss is the token-weighted
mean NLL of the gold label words, and two gloo workers report what one reports."""

from __future__ import annotations

import json

import pytest
import torch
import torch.multiprocessing as mp

from pipeline import methods
from pipeline.config import BackboneConfig
from pipeline.data.builtin import get_task
from pipeline.data.encode import Encoder, Encoding, collate
from pipeline.evaluation.score import evaluate, score_examples
from pipeline.model.backbone import embedding_rows, load_backbone
from pipeline.model.prompted import PromptedModel, sequence_logprob

RTE = get_task("rte")  # label words of different token counts: a per-example mean would differ from token-weighted
EXAMPLES = [
    {"sentence1": "a man plays a guitar on the stage", "sentence2": "someone plays music", "label": 0},
    {"sentence1": "it rained", "sentence2": "the ground is dry", "label": 1},
    {"sentence1": "the cat sat on the mat all day long", "sentence2": "a cat sat", "label": 0},
    {"sentence1": "prices rose", "sentence2": "prices fell sharply in every market", "label": 1},
    {"sentence1": "she wrote a book", "sentence2": "a book was written", "label": 0},
]


def _prompted(model, info, name: str) -> PromptedModel:
    """`name` at its default config with every parameter perturbed, so offsets and prompts are all non-zero."""
    method = methods.build(methods.config_class(name)(), info, embedding_rows(model), seed=0)
    gen = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for p in method.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=gen))
    return PromptedModel(model, method, info.is_seq2seq).eval()


def _alone(pm, enc, ex) -> list[tuple[float, int]]:
    """(summed log-prob, tokens) of each label word for one example scored as its own unpadded sequence."""
    out = []
    for word in RTE.label_words:
        b = collate([enc.pair(RTE.source_text(ex), word)], enc.tokenizer.pad_token_id)
        with torch.no_grad():
            logp, n = sequence_logprob(pm(**b).logits, b["labels"], not enc.is_seq2seq)
        out.append((logp.item(), int(n.item())))
    return out


@pytest.mark.parametrize("name", methods.names())
@pytest.mark.parametrize("family", ["llama", "t5"])
def test_batched_padded_scores_equal_each_example_alone(family, name, backbones):
    model, tok, info = backbones[family]
    pm, enc = _prompted(model, info, name), Encoder(tok, info.is_seq2seq, Encoding(64, 8, ""))
    batched = score_examples(pm, enc, RTE, EXAMPLES, "cpu")  # one padded batch of 5 different lengths
    for ex, (pred, nll, ntok) in zip(EXAMPLES, batched, strict=True):
        alone = _alone(pm, enc, ex)
        assert pred == max(range(len(alone)), key=lambda c: alone[c][0])
        assert nll == pytest.approx(-alone[ex["label"]][0], rel=1e-4, abs=1e-4) and ntok == alone[ex["label"]][1]


def test_reported_loss_is_token_weighted_over_gold_words(backbones):
    model, tok, info = backbones["llama"]
    pm, enc = _prompted(model, info, "dept"), Encoder(tok, False, Encoding(64, 8, ""))
    golds = [_alone(pm, enc, ex)[ex["label"]] for ex in EXAMPLES]
    assert len({n for _, n in golds}) > 1  # the words differ in length, so the weighting is observable
    want = -sum(lp for lp, _ in golds) / sum(n for _, n in golds)
    for batch_size in (1, 2, 5):  # uneven last batch included
        got = evaluate(pm, enc, RTE, EXAMPLES, batch_size, "cpu")
        assert got["val_loss"] == pytest.approx(want, rel=1e-5)
    assert want != pytest.approx(sum(-lp / n for lp, n in golds) / len(golds), rel=1e-3)  # not the mean of means


def _worker(rank: int, world: int, store: str, model_dir: str, out: str) -> None:
    torch.distributed.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    model, tok, info = load_backbone(BackboneConfig(name_or_path=model_dir))
    pm = _prompted(model, info, "ept")
    metrics = evaluate(pm, Encoder(tok, False, Encoding(64, 8, "")), RTE, EXAMPLES, 2, "cpu")
    if rank == 0:
        with open(out, "w") as f:
            json.dump(metrics, f)
    _end(0)


def _end(code: int) -> None:
    """Leave a spawned rank once every collective is done on both ranks: torch's static destructors at interpreter
    exit sometimes abort on gloo threads still joinable ("terminate called without an active exception", SIGABRT)
    after the results were written; what the test checks is in the file, so the rank exits at once."""
    import os

    torch.distributed.barrier()
    torch.distributed.destroy_process_group()
    os._exit(code)


def test_two_workers_report_what_one_reports(backbones, tiny_dirs, tmp_path):
    model, tok, info = backbones["llama"]
    one = evaluate(_prompted(model, info, "ept"), Encoder(tok, False, Encoding(64, 8, "")), RTE, EXAMPLES, 2, "cpu")
    out = tmp_path / "two.json"
    # 5 examples over 2 ranks: rank 1's shard is padded by repetition, and each example must still count once.
    mp.start_processes(_worker, args=(2, str(tmp_path / "store"), str(tiny_dirs["llama"]), str(out)), nprocs=2,
                       start_method="spawn")
    two = json.loads(out.read_text())
    assert two.keys() == one.keys()
    for k in one:
        assert two[k] == pytest.approx(one[k], rel=1e-5), k


@pytest.mark.parametrize("name", ["dept", "ept"])
def test_free_generation_keeps_end_aligned_offsets_on_the_source(name, backbones):
    """Greedy decoding (STS-B-style regression) grows the sequence by one token per step; the offsets of an
    end-aligned method must stay on the source tokens, as in training, not slide onto the generated ones."""
    from pipeline.evaluation.score import generate

    model, tok, info = backbones["llama"]
    pm = _prompted(model, info, name)
    assert pm.method.align == "end"
    seen = []
    hook = pm.method.register_forward_hook(lambda mod, args, out: seen.append(out.inputs_embeds.detach().clone()))
    enc = Encoder(tok, False, Encoding(64, 4, " Label :"))
    sources = [RTE.source_text(ex) for ex in EXAMPLES[:2]]
    try:
        generate(pm, enc, sources, "cpu")
    finally:
        hook.remove()
    n_prompt = pm.method.num_virtual_tokens(pm.method.cfg)
    shortest = min(len(enc.source_ids(s)) for s in sources)
    assert len(seen) == 4
    for step in seen[1:]:  # every step rewrites the source exactly as the first did
        torch.testing.assert_close(step[:, :n_prompt + shortest], seen[0][:, :n_prompt + shortest], rtol=0, atol=0)


def test_batches_run_in_source_length_order_and_predictions_map_back_to_their_examples(backbones, monkeypatch):
    """Batches pad to their longest row, so `evaluate` scores examples shortest first; each prediction must still
    reach the metrics at its own example's index."""
    import pipeline.evaluation.score as score

    model, tok, info = backbones["llama"]
    pm, enc = _prompted(model, info, "pt"), Encoder(tok, False, Encoding(64, 8, ""))
    examples = EXAMPLES + [{"sentence1": "no", "sentence2": "yes", "label": 1}]  # 6 rows, 3 batches of 2
    lengths = [len(enc.source_ids(RTE.source_text(ex))) for ex in examples]
    assert lengths != sorted(lengths)  # the input order is not already sorted
    batches, preds = [], []
    real_score, real_metrics = score.score_examples, score.compute_metrics

    def spy_score(model, encoder, task, chunk, device):
        batches.append([len(encoder.source_ids(task.source_text(ex))) for ex in chunk])
        return real_score(model, encoder, task, chunk, device)

    def spy_metrics(task, predictions, golds):
        preds.extend(predictions)
        return real_metrics(task, predictions, golds)

    monkeypatch.setattr(score, "score_examples", spy_score)
    monkeypatch.setattr(score, "compute_metrics", spy_metrics)
    evaluate(pm, enc, RTE, examples, 2, "cpu")
    assert [n for b in batches for n in b] == sorted(lengths)
    scores = [[logp for logp, _ in _alone(pm, enc, ex)] for ex in examples]  # per label word, each example alone
    assert preds == [row.index(max(row)) for row in scores]
