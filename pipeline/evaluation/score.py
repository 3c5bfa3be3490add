"""Evaluation of a PromptedModel: rank classification over label words, greedy generation otherwise.

Rank classification (as T0/DePT-style text-to-text evaluation): each label word's log-likelihood over its tokens
(EOS included), summed or averaged per token (`Task.scoring`), and the best-scoring word is the prediction; unlike
free generation, every prediction is a valid label. Generation tasks decode greedily (pipeline.evaluation.generate)
and are scored against every reference of their input; regression tasks (STS-B) generate a number.
`val_loss` is the gold target's mean NLL per token (generation: the first reference).

Under ZeRO-3 every rank must run the same number of forward passes (parameters are gathered collectively),
so each rank evaluates an equal-sized shard (the last one padded by repetition) and predictions are gathered.
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist

from pipeline.data.encode import Encoder, collate
from pipeline.data.metrics import compute_metrics
from pipeline.data.tasks import Task
from pipeline.evaluation.generate import generate
from pipeline.evaluation.label_scores import label_scores
from pipeline.model.prompted import sequence_logprob


def _shard(n: int, rank: int, world: int) -> list[int]:
    per = math.ceil(n / world)
    return [(rank * per + i) % n for i in range(per)] if n else []


def _pick(logp: torch.Tensor, ntok: torch.Tensor, scoring: str) -> torch.Tensor:
    """(B,) the best label per row by summed or per-token mean log-probability."""
    return (logp if scoring == "sum" else logp / ntok).argmax(-1)


@torch.no_grad()
def score_examples(model, encoder: Encoder, task: Task, examples: list[dict], device, gold: bool = True
                   ) -> list[tuple]:
    """(prediction, gold-target NLL summed over tokens, token count) per example; with `gold` False (inputs
    without answers) the NLL and count are 0. A prediction is a class index, a generated text or a number."""
    causal = not encoder.is_seq2seq
    sources = [task.source_text(ex) for ex in examples]
    if task.is_classification:
        logp, ntok = label_scores(model, encoder, sources, task.label_words, device)
        preds = _pick(logp, ntok, task.scoring).tolist()
        if not gold:
            return [(p, 0.0, 0) for p in preds]
        labels = torch.tensor([task.label(ex) for ex in examples], device=logp.device)
        rows = torch.arange(len(examples), device=logp.device)
        return list(zip(preds, (-logp[rows, labels]).tolist(), ntok[rows, labels].tolist(), strict=True))
    if task.kind == "generation":
        texts = generate(model, encoder, sources, device, task.max_new_tokens, task.stop)
    else:  # regression: a number of at most max_target_length tokens
        texts = generate(model, encoder, sources, device, encoder.max_target_length)
    preds = texts if task.kind == "generation" else [task.parse_prediction(t) for t in texts]
    if not gold:
        return [(p, 0.0, 0) for p in preds]
    feats = [encoder.pair(s, task.target_text(ex)) for s, ex in zip(sources, examples, strict=True)]
    batch = {k: v.to(device) for k, v in collate(feats, encoder.tokenizer.pad_token_id).items()}
    logp, ntok = sequence_logprob(model(**batch).logits, batch["labels"], causal)
    return list(zip(preds, (-logp).tolist(), ntok.tolist(), strict=True))


def evaluate(model, encoder: Encoder, task: Task, examples: list[dict], batch_size: int, device,
             progress=None) -> dict[str, float]:
    """Task metrics plus `loss` (mean gold-target NLL per token) over `examples`, prefixed with 'val_'.

    `progress(done)` is called after each batch with this rank's examples scored so far (times world size)."""
    distributed = dist.is_available() and dist.is_initialized()
    rank, world = (dist.get_rank(), dist.get_world_size()) if distributed else (0, 1)
    # Scored in order of source length, so each batch pads to a near-equal longest row: in input order, padding was
    # 47% of the positions of the first 200 SST-2 validation rows at batch 32 (SmolLM2's tokenizer), sorted 9%.
    # Each rank still runs the same number of batches (ZeRO-3 lockstep): only the order inside its shard changes.
    length = lambda j: len(encoder.source_ids(task.source_text(examples[j])))  # noqa: E731 (tokens)
    idx = sorted(_shard(len(examples), rank, world), key=length)
    scored = []
    for i in range(0, len(idx), batch_size):
        scored += score_examples(model, encoder, task, [examples[j] for j in idx[i: i + batch_size]], device)
        if progress is not None:
            progress(min(len(scored) * world, len(examples)))
    pairs = list(zip(idx, scored, strict=True))
    if distributed:
        gathered: list = [None] * world
        dist.all_gather_object(gathered, pairs)
        pairs = [p for g in gathered for p in g]
    by_index = dict(pairs)  # the padding repeats indices; each example counts once
    rows = [by_index[i] for i in range(len(examples))]
    gold = [task.references(ex) if task.kind == "generation" else task.label(ex) for ex in examples]
    metrics = compute_metrics(task, [r[0] for r in rows], gold)
    metrics["loss"] = sum(r[1] for r in rows) / max(sum(r[2] for r in rows), 1)
    return {f"val_{k}": float(v) for k, v in metrics.items()}
