"""Evaluation of a PromptedModel: rank classification over label words, greedy generation for regression.

Rank classification (as T0/DePT-style text-to-text evaluation): each label word's log-likelihood is summed
over its tokens (EOS included) and the best-scoring word is the prediction; unlike free generation, every
prediction is a valid label. Regression tasks (STS-B) generate a number greedily.

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
from pipeline.evaluation.label_scores import label_scores
from pipeline.prompted import sequence_logprob


def _shard(n: int, rank: int, world: int) -> list[int]:
    per = math.ceil(n / world)
    return [(rank * per + i) % n for i in range(per)] if n else []


@torch.no_grad()
def score_examples(model, encoder: Encoder, task: Task, examples: list[dict], device) -> list[tuple]:
    """(prediction, gold-target NLL summed over tokens, token count) per example."""
    causal = not encoder.is_seq2seq
    sources = [task.source_text(ex) for ex in examples]
    if task.is_classification:
        logp, ntok = label_scores(model, encoder, sources, task.label_words, device)
        preds = logp.argmax(-1).tolist()
        gold = torch.tensor([task.label(ex) for ex in examples], device=logp.device)
        rows = torch.arange(len(examples), device=logp.device)
        return list(zip(preds, (-logp[rows, gold]).tolist(), ntok[rows, gold].tolist(), strict=True))
    feats = [encoder.pair(s, task.target_text(ex)) for s, ex in zip(sources, examples, strict=True)]
    batch = {k: v.to(device) for k, v in collate(feats, encoder.tokenizer.pad_token_id).items()}
    logp, ntok = sequence_logprob(model(**batch).logits, batch["labels"], causal)
    preds = [task.parse_prediction(t) for t in generate(model, encoder, sources, device)]
    return list(zip(preds, (-logp).tolist(), ntok.tolist(), strict=True))


@torch.no_grad()
def generate(model, encoder: Encoder, sources: list[str], device) -> list[str]:
    """Greedy decoding of max_target_length tokens (fixed step count: ZeRO-3 ranks stay in lockstep)."""
    tok = encoder.tokenizer
    feats = [{"input_ids": encoder.source_ids(s), "labels": []} for s in sources]
    batch = collate(feats, tok.pad_token_id)
    ids, mask = batch["input_ids"].to(device), batch["attention_mask"].to(device)
    bsz, steps = len(sources), encoder.max_target_length
    out = torch.full((bsz, steps), tok.pad_token_id, dtype=torch.long, device=device)
    if encoder.is_seq2seq:
        start = model.backbone.config.decoder_start_token_id
        dec = torch.full((bsz, 1), start, dtype=torch.long, device=device)
        for t in range(steps):
            logits = model(input_ids=ids, attention_mask=mask, decoder_input_ids=dec).logits
            out[:, t] = logits[:, -1].argmax(-1)
            dec = torch.cat([dec, out[:, t: t + 1]], dim=1)
    else:
        lengths = mask.sum(1)  # (B,) real tokens per row; the next token goes at index `lengths`
        ids = torch.cat([ids, ids.new_full((bsz, steps), tok.pad_token_id)], dim=1)
        mask = torch.cat([mask, mask.new_zeros(bsz, steps)], dim=1)
        # Generated tokens are marked as labels, so a method that places offsets relative to the end of the source
        # (DePT/EPT align='end') keeps them on the source tokens as in training, instead of sliding onto the output.
        labels = torch.full_like(ids, -100)
        rows = torch.arange(bsz, device=device)
        for t in range(steps):
            logits = model(input_ids=ids, attention_mask=mask, labels=labels).logits
            offset = logits.shape[1] - ids.shape[1]  # prompt tokens the method prepended
            out[:, t] = logits[rows, offset + lengths - 1].argmax(-1)
            ids[rows, lengths] = out[:, t]
            mask[rows, lengths] = 1
            labels[rows, lengths] = out[:, t]
            lengths = lengths + 1
    texts = []
    for row in out.tolist():
        row = row[: row.index(tok.eos_token_id)] if tok.eos_token_id in row else row
        texts.append(tok.decode(row, skip_special_tokens=True).strip())
    return texts


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
    metrics = compute_metrics(task, [r[0] for r in rows], [task.label(ex) for ex in examples])
    metrics["loss"] = sum(r[1] for r in rows) / max(sum(r[2] for r in rows), 1)
    return {f"val_{k}": float(v) for k, v in metrics.items()}
