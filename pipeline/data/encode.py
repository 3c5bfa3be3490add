"""Tokenise text-to-text examples for either backbone family, and collate them into padded tensors.

`Encoding` is the one record of how inputs are tokenised (lengths, separator, chat template); every place that
builds an `Encoder` builds it from one.

Decoder-only: input_ids = source (+ BOS as the tokenizer adds it) + separator + " target" + EOS, with labels
-100 over source and separator so the loss covers the label tokens only. The separator (default " Label :", the
template of the DePT and ADePT reference decoder paths, `f"{x} Label : "`) is tokenised on its own and kept through
truncation, so the label always follows it. Encoder-decoder: input_ids = source (+ EOS) and
labels = target + EOS for the decoder. With `chat_template` (decoder-only, off by default), the input is the user
turn of the tokenizer's chat template and the target the assistant's reply: the label then sits right after the
template's assistant header instead of after the separator, and the input is cut inside the user turn so that
header is never lost. Padding is on the right; prompts go in front, so positions of real
tokens stay contiguous from 0 for every row.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from pipeline.data.tasks import Task
from pipeline.schema import bounds, max_chars

MAX_SEPARATOR_CHARS = 256  # a separator is a few characters; each one is tokenised into every input
_SLOT = "\x00PROMPTFARM-INPUT\x00"  # stands for the input while the chat template is rendered around it


@dataclass(frozen=True)
class Encoding:
    """How a prompt's inputs become tokens: set by the experiment's `data` section, recorded with every prompt, so
    evaluation, `predict`, the pyfunc and the peer check tokenise exactly as training did."""

    max_length: int = field(default=256, metadata=bounds(8))
    """Maximum input length in tokens before the prompt is added (the input is cut from the right)."""
    max_target_length: int = field(default=8, metadata=bounds(1))
    """Maximum target length in tokens, EOS included (label words, generated numbers, generation targets)."""
    decoder_separator: str = field(default=" Label :", metadata=max_chars(MAX_SEPARATOR_CHARS))
    """Decoder-only: text between the input and the target (the DePT/ADePT references' template)."""
    chat_template: bool = False
    """Decoder-only: wrap the input in the tokenizer's chat template as one user turn, the target as the
    assistant's reply (the separator is then not used)."""

    @classmethod
    def of(cls, data) -> Encoding:
        """The encoding a `DataConfig` (or anything with these attributes) asks for."""
        return cls(**{k: getattr(data, k) for k in cls.__dataclass_fields__})

    def to_dict(self) -> dict:
        """JSON-safe fields, as recorded in prompt_config.json's `encoding`."""
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass
class Encoder:
    """Turns (source, target) text pairs into token features for one tokenizer and family."""

    tokenizer: object
    """The backbone's Hugging Face tokenizer."""
    is_seq2seq: bool
    """True for T5-style encoder-decoder backbones."""
    encoding: Encoding = Encoding()
    """Lengths, separator and chat template (pipeline.data.encode.Encoding)."""

    def __post_init__(self) -> None:
        enc, tok = self.encoding, self.tokenizer
        self.max_length, self.max_target_length = enc.max_length, enc.max_target_length
        self.chat = enc.chat_template and not self.is_seq2seq
        sep = enc.decoder_separator if not (self.is_seq2seq or self.chat) else ""
        self._sep_ids = tok(sep, add_special_tokens=False)["input_ids"] if sep else []
        self._around: tuple[list[int], list[int]] = ([], [])
        if self.chat:
            if not getattr(tok, "chat_template", None):
                raise ValueError("data.chat_template=true but the backbone's tokenizer has no chat template; "
                                 "expected an instruct/chat tokenizer or data.chat_template=false")
            text = tok.apply_chat_template([{"role": "user", "content": _SLOT}], tokenize=False,
                                           add_generation_prompt=True)
            head, _, tail = text.partition(_SLOT)
            self._around = (tok(head, add_special_tokens=False)["input_ids"],
                            tok(tail, add_special_tokens=False)["input_ids"])

    def _input_ids(self, text: str) -> tuple[list[int], int]:
        """(ids, budget): the input's own tokens and how many of them fit."""
        if self.chat:
            ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
            return ids, max(self.max_length - len(self._around[0]) - len(self._around[1]), 1)
        ids = self.tokenizer(text, add_special_tokens=True)["input_ids"]
        return ids, self.max_length if self.is_seq2seq else max(self.max_length - len(self._sep_ids), 1)

    def source_truncated(self, text: str) -> bool:
        """True when `text` is longer than max_length allows and loses tokens from its end."""
        ids, budget = self._input_ids(text)
        return len(ids) > budget

    def source_ids(self, text: str) -> list[int]:
        ids, budget = self._input_ids(text)
        if self.chat:  # the input is cut inside the user turn; the assistant header always follows it
            return self._around[0] + ids[:budget] + self._around[1]
        if self.is_seq2seq:
            if len(ids) > budget:  # keep the tokenizer's trailing EOS (T5) when truncating
                ids = ids[: budget - 1] + ids[-1:]
            return ids
        return ids[:budget] + self._sep_ids

    def target_tokens(self, text: str) -> list[int]:
        """The target's tokens before truncation and EOS."""
        # Leading space: label words are separate words after the separator in a decoder-only sequence (the
        # assistant's reply starts a fresh line in the chat template).
        lead = "" if self.is_seq2seq or self.chat else " "
        return self.tokenizer(lead + text, add_special_tokens=False)["input_ids"]

    def label_tokens(self, task: Task) -> list[list[int]]:
        """Each label word's tokens as it follows the input (no EOS), in label order; [] unless classification."""
        return [self.target_tokens(w) for w in task.label_words or ()]

    def target_ids(self, text: str) -> list[int]:
        return self.target_tokens(text)[: self.max_target_length - 1] + [self.tokenizer.eos_token_id]

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
