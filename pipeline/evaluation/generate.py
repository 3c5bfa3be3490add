"""Greedy decoding through a PromptedModel, stopping at EOS and/or a newline (generation and regression tasks).

Decoder-only backbones run the prompted input once and then one token per step over its cached keys/values (the
prompt itself once per batch when the method declares it shared, `pipeline.model.prompted.shared_prefix_forward`).
The method still sees each row's whole sequence at every step, generated tokens marked as labels, so a method that
places offsets relative to the end of the source (DePT/EPT align='end') keeps them on the source tokens as in
training; the step's new token takes the embedding the method gives it there. Should a method's output for earlier
positions change as tokens are appended (it would then not be causal), decoding falls back to running the whole
sequence every step: slower, never different. T5 re-runs its encoder-decoder each step.

Under ZeRO-3 every rank runs the same number of steps: decoding ends early only when every row of every rank has
stopped (one all-reduce per step).

Shapes: B rows, n prompt tokens, S longest source, T steps taken so far.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from pipeline.data.encode import Encoder, collate
from pipeline.methods.base import PromptBatch
from pipeline.model.prompted import shared_prefix_forward, shared_prefix_len


def _all_done(done: torch.Tensor) -> bool:
    flag = torch.tensor([float(bool(done.all()))])
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return bool(flag.item())


class _Stops:
    """Which rows have stopped: EOS generated ('eos'), or a token whose text holds a line break ('newline')."""

    def __init__(self, tok, stop: tuple[str, ...], bsz: int, device) -> None:
        self.tok, self.eos, self.newline = tok, "eos" in stop, "newline" in stop
        self.done = torch.zeros(bsz, dtype=torch.bool, device=device)

    def update(self, new: torch.Tensor) -> None:
        if self.eos:
            self.done |= new == self.tok.eos_token_id
        if self.newline:
            self.done |= torch.tensor(["\n" in self.tok.decode([t]) for t in new.tolist()], device=new.device)


def _texts(tok, out: list[list[int]], stop: tuple[str, ...]) -> list[str]:
    texts = []
    for row in out:
        row = row[: row.index(tok.eos_token_id)] if tok.eos_token_id in row else row
        text = tok.decode(row, skip_special_tokens=True)
        texts.append((text.split("\n", 1)[0] if "newline" in stop else text).strip())
    return texts


@torch.no_grad()
def generate(model, encoder: Encoder, sources: list[str], device, max_new_tokens: int | None = None,
             stop: tuple[str, ...] = ("eos",)) -> list[str]:
    """Greedy continuation of each source, at most `max_new_tokens` tokens (None: the encoding's
    max_target_length), cut at the first stop."""
    tok = encoder.tokenizer
    max_new_tokens = max_new_tokens or encoder.max_target_length
    batch = collate([{"input_ids": encoder.source_ids(s), "labels": []} for s in sources], tok.pad_token_id)
    ids, mask = batch["input_ids"].to(device), batch["attention_mask"].to(device)
    stops = _Stops(tok, stop, len(sources), device)
    if encoder.is_seq2seq:
        out = _seq2seq(model, ids, mask, max_new_tokens, stops)
    elif model.label_logits_only:
        out = _cached(model, ids, mask, max_new_tokens, stops, tok.pad_token_id)
    else:
        out = _full(model, ids, mask, max_new_tokens, stops, tok.pad_token_id)
    return _texts(tok, out, stop)


def _seq2seq(model, ids, mask, steps: int, stops: _Stops) -> list[list[int]]:
    bsz = ids.shape[0]
    dec = torch.full((bsz, 1), model.backbone.config.decoder_start_token_id, dtype=torch.long, device=ids.device)
    for _ in range(steps):
        new = model(input_ids=ids, attention_mask=mask, decoder_input_ids=dec).logits[:, -1].argmax(-1)
        dec = torch.cat([dec, new[:, None]], dim=1)
        stops.update(new)
        if _all_done(stops.done):
            break
    return dec[:, 1:].tolist()


def _grown(ids, mask, steps: int, pad_id: int):
    """ids/mask widened by `steps` pad columns, labels -100 (B, S + steps), and each row's length (B,)."""
    bsz = ids.shape[0]
    lengths = mask.sum(1)
    ids = torch.cat([ids, ids.new_full((bsz, steps), pad_id)], dim=1)
    mask = torch.cat([mask, mask.new_zeros(bsz, steps)], dim=1)
    return ids, mask, torch.full_like(ids, -100), lengths


def _full(model, ids, mask, steps: int, stops: _Stops, pad_id: int, start: int = 0,
          grown=None, out: list | None = None) -> list[list[int]]:
    """Every step runs the whole prompted sequence (the fallback; also models without logits_to_keep)."""
    ids, mask, labels, lengths = grown or _grown(ids, mask, steps, pad_id)
    rows = torch.arange(ids.shape[0], device=ids.device)
    out = out if out is not None else []
    for t in range(start, steps):
        logits = model(input_ids=ids, attention_mask=mask, labels=labels).logits
        offset = logits.shape[1] - ids.shape[1]  # prompt tokens the method prepended
        new = logits[rows, offset + lengths + t - 1].argmax(-1)
        _append(ids, mask, labels, lengths + t, new, out)
        stops.update(new)
        if _all_done(stops.done):
            break
    return [list(r) for r in zip(*out, strict=True)] if out else [[] for _ in range(ids.shape[0])]


def _append(ids, mask, labels, at, new, out: list) -> None:
    rows = torch.arange(ids.shape[0], device=ids.device)
    ids[rows, at], mask[rows, at], labels[rows, at] = new, 1, new
    out.append(new.tolist())


def _prompted(model, ids, mask, labels) -> PromptBatch:
    emb = model.backbone.get_input_embeddings()(ids)  # (B, S+steps, d)
    return model.method(PromptBatch(emb, mask, labels))


def _cached(model, ids, mask, steps: int, stops: _Stops, pad_id: int) -> list[list[int]]:
    """One prefix forward, then one token per step over the cache (see module docstring)."""
    s_max = ids.shape[1]
    grown = _grown(ids, mask, steps, pad_id)
    ids, mask, labels, lengths = grown
    first = _prompted(model, ids, mask, labels)
    n = first.inputs_embeds.shape[1] - ids.shape[1]
    # copies: a method that returns the batch's own mask (the frozen baseline's NoPrompt) would otherwise see the
    # generated tokens marked in it by _append, and the check below would send every step down the full path
    prefix, prefix_mask = first.inputs_embeds[:, : n + s_max].clone(), first.attention_mask[:, : n + s_max].clone()
    last = n + lengths - 1  # (B,) each row's last source position
    keep, where = torch.unique(last, return_inverse=True)
    if shared_prefix_len(model.method, model.backbone, prefix, prefix_mask, n):
        out = shared_prefix_forward(model.backbone, prefix, prefix_mask, n, keep)
    else:
        out = model.backbone(inputs_embeds=prefix, attention_mask=prefix_mask, use_cache=True, logits_to_keep=keep)
    rows = torch.arange(ids.shape[0], device=ids.device)
    new, cache, tokens = out.logits[rows, where].argmax(-1), out.past_key_values, []
    cache_mask = prefix_mask
    for t in range(steps):
        _append(ids, mask, labels, lengths + t, new, tokens)
        stops.update(new)
        if t + 1 == steps or _all_done(stops.done):
            break
        now = _prompted(model, ids, mask, labels)
        real = prefix_mask[:, :, None].to(prefix.dtype)  # (B, n+S, 1): positions that were not padding
        if not torch.equal(now.inputs_embeds[:, : n + s_max] * real, prefix * real):  # not causal: in full from here
            return _full(model, None, None, steps, stops, pad_id, start=t + 1, grown=grown, out=tokens)
        at = n + lengths + t  # (B,) where the token just generated sits in each row's own sequence
        step_emb = now.inputs_embeds[rows, at][:, None]  # (B, 1, d)
        cache_mask = torch.cat([cache_mask, cache_mask.new_ones(ids.shape[0], 1)], dim=1)
        out = model.backbone(inputs_embeds=step_emb, attention_mask=cache_mask, past_key_values=cache,
                             position_ids=at[:, None], use_cache=True, logits_to_keep=1)
        new, cache = out.logits[:, -1].argmax(-1), out.past_key_values
    return [list(r) for r in zip(*tokens, strict=True)]
