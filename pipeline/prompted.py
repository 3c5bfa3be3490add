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
            return self._label_loss(batch)
        return self.backbone(inputs_embeds=batch.inputs_embeds, attention_mask=batch.attention_mask,
                             labels=batch.labels)

    def _label_loss(self, batch: PromptBatch):
        """Training loss with the LM head run only where some row's next token is a label (the same mean token
        cross-entropy as the backbone's own loss). A classification batch has ~2 label tokens per row among ~100-200
        prompt + input positions, and the head over a 49K vocabulary was ~20% of a SmolLM2-135M step."""
        target = batch.labels[:, 1:]  # (B, T-1): the token position t predicts
        keep = (target != -100).any(0).nonzero().squeeze(1)  # (K,) positions that predict a label in some row
        out = self.backbone(inputs_embeds=batch.inputs_embeds, attention_mask=batch.attention_mask,
                            logits_to_keep=keep)  # logits (B, K, V)
        out.loss = F.cross_entropy(out.logits.float().flatten(0, 1), target[:, keep].flatten(), ignore_index=-100)
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
