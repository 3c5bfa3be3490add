"""The prompt-method plugin contract and the helpers every method shares.

A method is an `nn.Module` registered with `@register(name, ConfigClass)` in its own file. It is built as
`cls(cfg, info, embed_rows)` and must provide:

- `forward(batch: PromptBatch) -> PromptBatch`: rewrite the embedded batch (prepend prompt, add offsets; pad
  masks with 1 and labels with -100 via `prepend_prompt`);
- `param_groups() -> list[dict]`: optimizer groups over its own parameters, each with its own `lr`;
- `search_space() -> dict[str, Dist]` (staticmethod): default ASHA space keyed by `method.<field>` or `train.<field>`;
- `paper_param_count(cfg, info) -> int` (staticmethod): the paper's formula for trainable parameters;
- `num_virtual_tokens(cfg) -> int` (staticmethod): tokens the method adds to the input sequence.

Saving/loading (`pipeline.methods.io`) works on any method through its config and `state_dict`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import Tensor


@dataclass(frozen=True)
class BackboneInfo:
    """What a prompt needs to know about (and record of) the frozen backbone it was trained on."""

    name_or_path: str
    """Hub id or local path the backbone was loaded from."""
    revision: str | None
    """Hub revision, if pinned."""
    model_type: str
    """HF config model_type, e.g. 'llama', 't5'."""
    is_seq2seq: bool
    """True for encoder-decoder (T5): the prompt goes on the encoder input."""
    hidden_size: int
    """Embedding width d."""
    vocab_size: int
    """Rows of the input embedding matrix."""
    num_layers: int
    """Transformer layers (encoder layers for T5)."""
    gguf: str | None = None
    """GGUF file spec the backbone was converted from (None: loaded from name_or_path)."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict recorded in prompt_config.json."""
        return dataclasses.asdict(self)

    def mismatch(self, other: BackboneInfo) -> str | None:
        """Describe the first architectural difference from `other`, or None if a prompt transfers."""
        for key in ("model_type", "hidden_size", "vocab_size", "num_layers", "is_seq2seq"):
            if getattr(self, key) != getattr(other, key):
                return f"{key}={getattr(other, key)!r} but the prompt was trained with {key}={getattr(self, key)!r}"
        return None


class PromptBatch(NamedTuple):
    """An embedded batch as the backbone will see it.

    A NamedTuple, not a dataclass: DeepSpeed ZeRO-3 finds the tensors in a module's inputs and outputs only
    inside tuples/lists/dicts, and without them its backward hooks never re-gather the method's partitioned
    parameters (backward then fails on 0-sized tensors).
    """

    inputs_embeds: Tensor
    """(B, L, d) token embeddings in the backbone's dtype."""
    attention_mask: Tensor
    """(B, L) 1 for real tokens, 0 for padding."""
    labels: Tensor | None = None
    """(B, L) targets aligned with inputs (decoder-only), -100 = ignored; None for encoder inputs."""


# Ray-free search-space specs; pipeline.tune converts them to ray.tune distributions. `per_rms=True` marks a
# learning rate of parameters that live in embedding space (a prompt), written for T5-scale embeddings: the
# search multiplies it by the backbone's embedding RMS (pipeline.tune.space.lr_scale), because Adam moves every
# coordinate by about `lr` per step whatever the embeddings' own scale (T5 ~1, SmolLM2-135M 0.136).
@dataclass(frozen=True)
class Choice:
    """Pick one of `values` uniformly."""

    values: tuple
    per_rms: bool = False


@dataclass(frozen=True)
class LogUniform:
    """Sample log-uniformly in [lo, hi]."""

    lo: float
    hi: float
    per_rms: bool = False


@dataclass(frozen=True)
class Uniform:
    """Sample uniformly in [lo, hi]."""

    lo: float
    hi: float
    per_rms: bool = False


Dist = Choice | LogUniform | Uniform
EmbedRows = Callable[[Tensor], Tensor]
"""(n,) long token ids -> (n, d) rows of the backbone's input embedding (ZeRO-3-safe, detached, float32)."""


def prepend_prompt(batch: PromptBatch, prompt: Tensor) -> PromptBatch:
    """Put `prompt` (B, n, d) or (n, d) in front of every sequence; mask 1 and label -100 for its positions."""
    emb = batch.inputs_embeds
    bsz = emb.shape[0]
    if prompt.dim() == 2:
        prompt = prompt.unsqueeze(0).expand(bsz, -1, -1)
    n = prompt.shape[1]
    mask = torch.cat([batch.attention_mask.new_ones(bsz, n), batch.attention_mask], dim=1)
    labels = batch.labels
    if labels is not None:
        labels = torch.cat([labels.new_full((bsz, n), -100), labels], dim=1)
    return PromptBatch(torch.cat([prompt.to(emb.dtype), emb], dim=1), mask, labels)


def init_from_vocab(embed_rows: EmbedRows | None, n: int, vocab_size: int, d: int, seed: int) -> Tensor:
    """(n, d) float32 init: rows of sampled vocabulary embeddings (Lester et al. 2021, Sec. 2.2).

    Token ids are drawn from the first min(vocab, 5000) ids, following Lester et al.'s "sampled vocab" init
    that favours frequent tokens (sentencepiece vocabularies are roughly frequency-ordered). Without an
    embedding (loading a saved prompt) the tensor is zeros and is overwritten by the stored weights.
    """
    if embed_rows is None:
        return torch.zeros(n, d)
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, min(vocab_size, 5000), (n,), generator=gen)
    return embed_rows(ids).detach().float().clone()


def count_trainable(module: torch.nn.Module) -> int:
    """Number of elements over parameters that require grad (ZeRO-3-safe via ds_numel when partitioned)."""
    return sum(getattr(p, "ds_numel", p.numel()) for p in module.parameters() if p.requires_grad)
