"""Label-word scores for rank classification: each label word's summed log-probability after each source.

`label_scores` is the entry point. The plain scorer runs every (source, word) pair as its own row. For decoder-only
backbones the cached scorer is exact at about one forward per example instead of one per label:

The plain scorer runs every (source, label word) pair as its own sequence: C full forwards per example. Here the
prompted source is run once with `use_cache=True`, the first label token of every word is read from its last
position, and the remaining label tokens of all C words run together as short continuations over the cached
keys/values (repeated C times along the batch). When the method declares its prompt shared by every row
(`PromptMethod.shares_prompt`, every method here), the prompt itself runs once for the batch
(`pipeline.model.prompted.shared_prefix_forward`). Attention over [prompt; source] is the same computation in all
three, so the scores equal the plain scorer's up to float rounding.

The method still sees whole (source, word) rows, so position- or token-dependent offsets (DePT, ADePT, EPT) are
applied to the label tokens exactly as in training; the method is cheap next to the backbone (embeddings only).
The prefix of an example must then come out identical for each of its C rows; where a method made it depend on
the label, the plain scorer is used instead (checked per batch, never silently wrong).

Shapes: B examples, C label words, n prompt tokens, S = longest source, T = longest label (EOS included).
"""

from __future__ import annotations

import torch

from pipeline.data.encode import Encoder, collate
from pipeline.methods.base import PromptBatch
from pipeline.model.prompted import sequence_logprob, shared_prefix_forward, shared_prefix_len

ROW_BUDGET = 256
"""Most (source, label word) rows scored at once: a batch of B sources over C labels runs in groups of
max(1, ROW_BUDGET // C) sources. With 77 labels (BANKING77) a 32-row batch is 2,464 rows, whose cached
keys/values (SmolLM2-135M: 46 KB per position, ~150 positions a row) would be 17 GB at once; 256 rows are 1.8 GB."""


def label_scores(model, encoder: Encoder, sources: list[str], words, device, cached: bool = True):
    """(B, C) summed log-probability of each label word (EOS included) after each source, and (B, C) its token
    count. Decoder-only backbones score each source once and every label from its cached keys/values
    (`cached_label_scores`); T5, or `cached=False`, scores every (source, word) pair as its own row. Sources run
    in groups of at most ROW_BUDGET rows."""
    score = cached_label_scores if cached and not encoder.is_seq2seq else _pairwise
    group = max(1, ROW_BUDGET // max(len(words), 1))
    parts = [score(model, encoder, sources[i: i + group], words, device) for i in range(0, len(sources), group)]
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


def _pairwise(model, encoder: Encoder, sources: list[str], words, device):
    feats = [encoder.pair(s, w) for s in sources for w in words]  # (B*C) rows, example-major
    batch = {k: v.to(device) for k, v in collate(feats, encoder.tokenizer.pad_token_id).items()}
    logp, ntok = sequence_logprob(model(**batch).logits, batch["labels"], not encoder.is_seq2seq)
    return logp.view(len(sources), len(words)), ntok.view(len(sources), len(words))


@torch.no_grad()
def cached_label_scores(model, encoder: Encoder, sources: list[str], words, device):
    """(B, C) summed label log-probabilities and (B, C) label token counts (see module docstring)."""
    tok = encoder.tokenizer
    bsz, n_words = len(sources), len(words)
    src = [encoder.source_ids(s) for s in sources]
    tgt = [encoder.target_ids(w) for w in words]  # label ids do not depend on the source (tokenised apart)
    feats = [{"input_ids": s + t, "labels": [-100] * len(s) + t} for s in src for t in tgt]  # (B*C) rows
    batch = {k: v.to(device) for k, v in collate(feats, tok.pad_token_id).items()}
    emb = model.backbone.get_input_embeddings()(batch["input_ids"])  # (B*C, L, d)
    full = model.method(PromptBatch(emb, batch["attention_mask"], batch["labels"]))
    n = full.inputs_embeds.shape[1] - emb.shape[1]  # prompt tokens prepended by the method
    src_len = torch.tensor([len(s) for s in src], device=device)  # (B,)
    seqs = full.inputs_embeds.view(bsz, n_words, *full.inputs_embeds.shape[1:])  # (B, C, n+L, d)

    s_max = int(src_len.max())
    pos = torch.arange(n + s_max, device=device)
    prefix_mask = (pos[None, :] < (n + src_len)[:, None]).long()  # (B, n+S) 1 on prompt + source
    prefix = seqs[:, :, : n + s_max] * prefix_mask[:, None, :, None]  # pads zeroed: compare real positions only
    spread = (prefix - prefix[:, :1]).abs().max() if n_words > 1 else 0.0
    if spread > 1e-5 * float(prefix.abs().max()):
        return _pairwise(model, encoder, sources, words, device)  # this method's prefix depends on the label

    # Only the last source position of each row needs logits: (B, U, V) for the U distinct such positions
    # instead of (B, n+S, V) (the LM head over a 49K vocabulary is ~20% of a SmolLM2 forward).
    last = n + src_len - 1  # (B,)
    keep, where = torch.unique(last, return_inverse=True)
    kw = {"logits_to_keep": keep} if model.label_logits_only else {}  # decoder supports logits_to_keep
    # the prompt runs once for all B examples
    if kw and shared_prefix_len(model.method, model.backbone, prefix[:, 0], prefix_mask, n):
        out = shared_prefix_forward(model.backbone, prefix[:, 0], prefix_mask, n, keep)
    else:
        out = model.backbone(inputs_embeds=prefix[:, 0], attention_mask=prefix_mask, use_cache=True, **kw)
    if not kw:  # a model without logits_to_keep returns every position
        where = last
    rows = torch.arange(bsz, device=device)
    first = torch.log_softmax(out.logits[rows, where].float(), dim=-1)  # (B, V): next token after the source
    first_ids = torch.tensor([t[0] for t in tgt], device=device)
    logp = first[:, first_ids]  # (B, C) log p(first label token | prompt, source)

    # Words of equal token length continue together (one forward per length), so no continuation is padded to the
    # longest word: BANKING77's 77 words (3-10 SmolLM2 tokens with EOS) continue over 264 positions, not 693.
    by_len: dict[int, list[int]] = {}
    for c, t in enumerate(tgt):
        by_len.setdefault(len(t), []).append(c)
    cache = out.past_key_values
    for length, group in sorted(by_len.items()):
        if length > 1:
            logp[:, group] += _continuations(model, seqs[:, group], cache, prefix_mask, src_len, n,
                                             [tgt[c] for c in group], len(by_len) > 1)
    ntok = torch.tensor([len(t) for t in tgt], device=device).expand(bsz, n_words)
    return logp, ntok


def _continuations(model, seqs: torch.Tensor, cache, prefix_mask: torch.Tensor, src_len: torch.Tensor, n: int,
                   tgt: list[list[int]], copy_cache: bool) -> torch.Tensor:
    """(B, G) log-probability of tokens 1 .. T-1 of each of G words of one token length T, read from their rows
    `seqs` (B, G, n+L, d) run as continuations over the prefix `cache` (repeated G times; copied first when other
    lengths still need it)."""
    import copy

    bsz, n_words, t = seqs.shape[0], len(tgt), len(tgt[0])
    # Continuation c of example b: label tokens 0 .. T-2 at absolute positions n+len_b .. ; they predict 1 .. T-1.
    cont_pos = n + src_len[:, None] + torch.arange(t - 1, device=seqs.device)[None, :]  # (B, T-1)
    grab = cont_pos.clamp(max=seqs.shape[2] - 1)[:, None, :, None].expand(bsz, n_words, t - 1, seqs.shape[-1])
    cont = seqs.gather(2, grab).flatten(0, 1)  # (B*G, T-1, d)
    cache = copy.deepcopy(cache) if copy_cache else cache
    cache.batch_repeat_interleave(n_words)  # (B, ...) -> (B*G, ...), example-major like the rows
    mask = torch.cat([prefix_mask.repeat_interleave(n_words, 0), prefix_mask.new_ones(bsz * n_words, t - 1)], dim=1)
    logits = model.backbone(inputs_embeds=cont, attention_mask=mask, past_key_values=cache,
                            position_ids=cont_pos.repeat_interleave(n_words, 0), use_cache=True).logits
    nxt = torch.tensor([w[1:] for w in tgt], device=seqs.device).repeat(bsz, 1)  # (B*G, T-1)
    picked = torch.log_softmax(logits.float(), dim=-1).gather(-1, nxt.unsqueeze(-1)).squeeze(-1)
    return picked.sum(-1).view(bsz, n_words)
