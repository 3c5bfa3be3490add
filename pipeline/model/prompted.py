"""PromptedModel: a frozen backbone plus one prompt method; knows nothing about which method it holds."""

from __future__ import annotations

import inspect

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.methods.base import PromptBatch


class PromptedModel(nn.Module):
    """Embeds input ids, lets the method rewrite the batch, runs the frozen backbone.

    Decoder-only: `labels` are aligned with `input_ids` and padded with -100 over the prompt by the method.
    Encoder-decoder (T5): the method sees the encoder input only; `labels` go to the decoder unchanged.
    """

    def __init__(self, backbone: nn.Module, method: nn.Module, is_seq2seq: bool) -> None:
        super().__init__()
        self.backbone = backbone
        self.method = method
        self.is_seq2seq = is_seq2seq
        self.label_logits_only = not is_seq2seq and "logits_to_keep" in inspect.signature(backbone.forward).parameters

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor | None = None,
                decoder_input_ids: torch.Tensor | None = None):
        emb = self.backbone.get_input_embeddings()(input_ids)  # (B, L, d)
        batch = PromptBatch(emb, attention_mask, None if self.is_seq2seq else labels)
        batch = self.method(batch)
        if self.is_seq2seq:
            return self.backbone(inputs_embeds=batch.inputs_embeds, attention_mask=batch.attention_mask,
                                 labels=labels, decoder_input_ids=decoder_input_ids)
        if self.training and batch.labels is not None and self.label_logits_only:
            return self._label_loss(batch, batch.inputs_embeds.shape[1] - emb.shape[1])  # positions prepended
        return self.backbone(inputs_embeds=batch.inputs_embeds, attention_mask=batch.attention_mask,
                             labels=batch.labels)

    def _label_loss(self, batch: PromptBatch, prepended: int):
        """Training loss with the LM head run only where some row's next token is a label (the same mean token
        cross-entropy as the backbone's own loss). A classification batch has ~2 label tokens per row among ~100-200
        prompt + input positions, and the head over a 49K vocabulary was ~20% of a SmolLM2-135M step. The prompt
        the method prepended runs once for the whole batch when the method declares it shared (`shared_prefix_len`)."""
        target, keep = label_positions(batch.labels)
        n = shared_prefix_len(self.method, self.backbone, batch.inputs_embeds, batch.attention_mask, prepended)
        if n:
            out = shared_prefix_forward(self.backbone, batch.inputs_embeds, batch.attention_mask, n, keep)
        else:
            out = self.backbone(inputs_embeds=batch.inputs_embeds, attention_mask=batch.attention_mask,
                                logits_to_keep=keep)  # logits (B, K, V)
        out.loss = F.cross_entropy(out.logits.float().flatten(0, 1), target[:, keep].flatten(), ignore_index=-100)
        return out


def label_positions(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T-1) the token each position of `labels` (B, T) predicts, and (K,) the ascending positions that predict a
    label (not -100) in some row: where a next-token loss needs logits."""
    target = labels[:, 1:]
    return target, (target != -100).any(0).nonzero().squeeze(1)


def shared_prefix_len(method: nn.Module, backbone: nn.Module, embeds: torch.Tensor, mask: torch.Tensor,
                      n: int) -> int:
    """`n` when `method` declares that the n positions it prepended to `embeds` (B, n+L, d) are one prompt tensor
    shared by every row (`PromptMethod.shares_prompt`) and `backbone` draws no dropout, else 0 (the full forward).
    `mask`: (B, n+L).

    Declared, not read off the values: `shared_prefix_forward` takes the prompt's gradient through row 0 only, which
    is the whole gradient when every row holds the same tensor (expanded), but not when rows equal in value come from
    different parameters (a bank of tables with one init, a gate that starts at zero). The values are still checked:
    a method that declares sharing but gives rows different prompts raises rather than training on row 0's.

    A one-row batch shares too (nothing saved): under ZeRO-3 every backbone call gathers each layer's shards with the
    other ranks, so a rank whose last batch has one row must make the same two calls as a rank with eight."""
    if n <= 0 or not getattr(method, "shares_prompt", False):
        return 0
    head = embeds[:, :n].detach()
    if not (bool(mask[:, :n].all()) and torch.equal(head, head[:1].expand_as(head))):
        raise RuntimeError(f"{type(method).__name__} declares shares_prompt=True, but the rows of its prompt differ "
                           f"(values or attention mask over the first {n} positions); a per-row prompt must leave "
                           "shares_prompt False (the full forward)")
    # Dropout: the shared prompt runs once, so all B rows would get one dropout mask over its n positions where the
    # full forward draws one per row (a different, if unbiased, noise), and a layer drop could differ between the
    # prefix call and the rest. Decided from the backbone's mode and config, the same on every rank.
    return 0 if active_dropout(backbone) else n


_DROPOUTS = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout)
_HEAD_RATES = ("classifier_dropout", "summary_first_dropout")  # heads a causal LM's forward never runs


def active_dropout(backbone: nn.Module) -> bool:
    """True when a forward of `backbone` draws random masks: a dropout module in training mode with p > 0, or, the
    backbone in training mode, a config rate > 0 that HF applies functionally (LLaMA's attention_dropout, OPT's
    dropout and layerdrop, BLOOM's hidden_dropout)."""
    if any(isinstance(m, _DROPOUTS) and m.training and m.p > 0 for m in backbone.modules()):
        return True
    config = getattr(backbone, "config", None)
    return bool(backbone.training and config is not None and any(r > 0 for r in _drop_rates(config.to_dict())))


def _drop_rates(config: dict):
    """Every numeric value of a config dict (nested ones too, e.g. text_config) whose key names a drop rate."""
    for key, value in config.items():
        if isinstance(value, dict):
            yield from _drop_rates(value)
        elif (isinstance(key, str) and "drop" in key and key not in _HEAD_RATES  # id2label has int keys
              and isinstance(value, int | float) and not isinstance(value, bool)):
            yield value


def shared_prefix_forward(backbone, embeds: torch.Tensor, mask: torch.Tensor, n: int, keep: torch.Tensor):
    """`backbone(inputs_embeds=embeds, attention_mask=mask, logits_to_keep=keep)` for a decoder whose first n
    positions are one prompt shared by every row (`shared_prefix_len`): those run once (batch 1) and their
    keys/values are repeated over the batch as the cache the other positions attend to. `keep`: (K,) ascending
    positions whose logits are returned, (B, K, V); the output's cache covers all n + L positions.

    Causal attention makes a prefix's hidden states independent of what follows it, so this is the same math with
    n * (B - 1) fewer token positions through the backbone: a 100-token prompt over B=8 SST-2 rows of ~25 tokens
    runs 300 positions instead of 1000 (at B=1 the same positions, in two calls). The prompt's gradient is the same
    sum over rows, taken through the repeat."""
    bsz = embeds.shape[0]
    head, tail = keep[keep < n], keep[keep >= n] - n  # logits wanted inside the prefix (the same in every row)
    prefix = backbone(inputs_embeds=embeds[:1, :n], use_cache=True, logits_to_keep=head if head.numel() else 1)
    cache = prefix.past_key_values
    cache.batch_repeat_interleave(bsz)  # (1, heads, n, d_head) -> (B, heads, n, d_head) per layer
    out = backbone(inputs_embeds=embeds[:, n:], attention_mask=mask, past_key_values=cache, use_cache=True,
                   logits_to_keep=tail)
    if head.numel():  # e.g. a language-modelling loss whose first label is predicted from the prompt's last token
        out.logits = torch.cat([prefix.logits.expand(bsz, -1, -1), out.logits], dim=1)
    return out


class NoPrompt(nn.Module):
    """The frozen baseline's "method": the batch unchanged (zero-shot rank classification, no parameters)."""

    def forward(self, batch: PromptBatch) -> PromptBatch:
        return batch


def sequence_logprob(logits: torch.Tensor, labels: torch.Tensor, causal: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(B,) summed log-probability of the non-ignored label tokens, and (B,) how many tokens were summed.

    logits (B, T, V); labels (B, T') with -100 ignored. Decoder-only logits carry the prompt in front and
    predict the next token, so they are right-aligned to the labels and shifted by one.
    """
    if causal:
        logits = logits[:, -labels.shape[1]:, :][:, :-1]
        labels = labels[:, 1:]
    logp = torch.log_softmax(logits.float(), dim=-1)
    mask = labels != -100
    picked = logp.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return (picked * mask).sum(-1), mask.sum(-1)
