"""Tokenise text-to-text examples for either backbone family, and collate them into padded tensors.

Decoder-only: input_ids = source (+ BOS as the tokenizer adds it) + separator + " target" + EOS, with labels
-100 over source and separator so the loss covers the label tokens only. The separator (default " Label :", the
template of the DePT and ADePT reference decoder paths, `f"{x} Label : "`) is tokenised on its own and kept through
truncation, so the label always follows it. Encoder-decoder: input_ids = source (+ EOS) and
labels = target + EOS for the decoder. Padding is on the right; prompts go in front, so positions of real
tokens stay contiguous from 0 for every row.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from pipeline.data.tasks import Task


@dataclass
class Encoder:
    """Turns (source, target) text pairs into token features for one tokenizer and family."""

    tokenizer: object
    """The backbone's Hugging Face tokenizer."""
    is_seq2seq: bool
    """True for T5-style encoder-decoder backbones."""
    max_length: int
    """Maximum source length in tokens (truncated from the right)."""
    max_target_length: int
    """Maximum target length in tokens, EOS included."""
    separator: str = ""
    """Decoder-only: text between source and label (DataConfig.decoder_separator); ignored for T5."""

    def __post_init__(self) -> None:
        sep = self.separator if not self.is_seq2seq else ""
        self._sep_ids = self.tokenizer(sep, add_special_tokens=False)["input_ids"] if sep else []

    def source_ids(self, text: str) -> list[int]:
        ids = self.tokenizer(text, add_special_tokens=True)["input_ids"]
        if self.is_seq2seq:
            if len(ids) > self.max_length:  # keep the tokenizer's trailing EOS (T5) when truncating
                ids = ids[: self.max_length - 1] + ids[-1:]
            return ids
        return ids[: max(self.max_length - len(self._sep_ids), 1)] + self._sep_ids

    def target_ids(self, text: str) -> list[int]:
        # Leading space: label words are separate words after the source in a decoder-only sequence.
        ids = self.tokenizer((text if self.is_seq2seq else " " + text), add_special_tokens=False)["input_ids"]
        return ids[: self.max_target_length - 1] + [self.tokenizer.eos_token_id]

    def pair(self, source: str, target: str) -> dict[str, list[int]]:
        src, tgt = self.source_ids(source), self.target_ids(target)
        if self.is_seq2seq:
            return {"input_ids": src, "labels": tgt}
        return {"input_ids": src + tgt, "labels": [-100] * len(src) + tgt}

    def examples(self, task: Task, examples: list[dict]) -> list[dict[str, list[int]]]:
        """Training features for each example (source text -> target text)."""
        return [self.pair(task.source_text(ex), task.target_text(ex)) for ex in examples]


def collate(features: list[dict[str, list[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad to the longest row: input_ids with pad_id, attention_mask 0, labels -100."""
    n_in = max(len(f["input_ids"]) for f in features)
    n_lab = max(len(f["labels"]) for f in features)
    ids = torch.full((len(features), n_in), pad_id, dtype=torch.long)
    mask = torch.zeros((len(features), n_in), dtype=torch.long)
    labels = torch.full((len(features), n_lab), -100, dtype=torch.long)
    for i, f in enumerate(features):
        ids[i, : len(f["input_ids"])] = torch.tensor(f["input_ids"])
        mask[i, : len(f["input_ids"])] = 1
        labels[i, : len(f["labels"])] = torch.tensor(f["labels"])
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}
