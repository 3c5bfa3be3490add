"""Decomposed prompt tuning (DePT): Shi & Lipani, "DePT: Decomposed Prompt Tuning for Parameter-Efficient
Fine-tuning", ICLR 2024, arXiv:2309.05173.

A short prompt P in R^{m x d} and low-rank factors A in R^{s x r}, B in R^{r x d} (A kaiming-uniform, B = 0, so
DePT starts as PT). For embedded inputs E in R^{B x L x d}, each input token i gets one row of the offset table:
    E'[:, i] = E[:, i] + alpha/sqrt(r) (A B)[row(i)]   (scale 0 when r = 0)
    row(i) = i (align 'start', i < s)   or   s - S + i (align 'end', S = the row's source length, 0 <= row < s)
    input [P; E'] in R^{B x (m+L) x d}, attention mask extended with ones over the prompt.
'end' follows the reference decoder path at test time; 'start' its T5 path (right padding). The reference's
decoder training layout differs: train.py decoder_preprocess_function appends the target and a pad to
"<source> Label : " and left-pads that whole sequence to max_seq_length = s, and all s rows of A B are added, so
in training its offsets also cover the label tokens and the pad (row s-1 sits on the pad after the label, and the
source's rows shift with the label's length), while at test time the label is generated past the s positions.
promptfarm uses the test-time layout in training too: the last source token always gets row s-1 and label
tokens get no offset, so a row means the same position in training and prediction (CHOICE).
Two learning rates: one for P, one for (A, B). Trainable parameters: m d + r (s + d); rank=None takes the
equal-budget r = floor((l - m) d / (s + d)) against PT of length l (m=60, r=30 at l=100, d=768, s=256: exactly
76,800 = 100 d). T5: only the encoder input changes; decoder-only: labels are padded with -100 over the prompt.

Provenance (paper, reference code, choices): docs/methods/dept.md
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

from pipeline.methods import register
from pipeline.methods.base import (
    BackboneInfo,
    Choice,
    EmbedRows,
    PromptBatch,
    PromptInit,
    PromptMethod,
    add_position_offsets,
    init_offset_factors,
    init_short_prompt,
    offset_groups,
    prepend_prompt,
    resolve_align,
)
from pipeline.schema import bounds


@dataclass
class DePTConfig:
    num_tokens: int = field(default=60, metadata=bounds(0))
    """Short prompt length m (60 in the paper's main T5-base setting)."""
    rank: int | None = field(default=None, metadata=bounds(0))
    """Rank r of A B; None: the largest r with m*d + r*(s+d) <= budget_tokens*d (30 at d=768, s=256, m=60)."""
    budget_tokens: int = field(default=100, metadata=bounds(1))
    """PT prompt length l whose l*d parameter budget rank=None matches (the paper compares against l=100)."""
    max_length: int = field(default=256, metadata=bounds(1))
    """s: rows of A = leading input positions that get an offset (max_seq_length=256 in the released runs)."""
    alpha: float = field(default=8.0, metadata=bounds(0.0))
    """Offset scale numerator: E' = E + alpha/sqrt(r) * A B (lora_alpha=8 in the reference code)."""
    lr: float = field(default=0.3, metadata=bounds(0.0, lo_open=True, units="embedding"))
    """Learning rate of the short prompt P (3e-1 or 4e-1 in the released runs)."""
    lr_lowrank: float = field(default=3e-2, metadata=bounds(0.0, lo_open=True, units="embedding"))
    """Learning rate of A and B, measured: offsets at ~40% of the embedding RMS over 300 steps (the travel probe;
    the released runs' 1e-4 .. 5e-3 over their far longer runs left them at 0.04% in ours)."""
    init: PromptInit = "vocab"
    """Short prompt init, as PT: 'vocab', 'labels' (class labels) or 'random'."""
    align: Literal["auto", "start", "end"] = "auto"
    """Which input token gets offset row i: 'start': token i; 'end': counted back from the last source token (the
    reference's left-padded decoder inputs); 'auto': 'end' on decoder-only backbones, 'start' on T5."""


def resolve_rank(cfg: DePTConfig, d: int) -> int:
    """cfg.rank, or the equal-budget rank floor((l - m) d / (s + d)) clamped at 0 when cfg.rank is None."""
    if cfg.rank is not None:
        return cfg.rank
    return max(0, (cfg.budget_tokens - cfg.num_tokens) * d // (cfg.max_length + d))


@register("dept", DePTConfig)
class DePT(PromptMethod):
    """Adds a position-wise low-rank offset to the first s input embeddings, then prepends a short prompt."""

    paper = "Shi & Lipani, ICLR 2024, arXiv:2309.05173"
    inference_cost = "m extra tokens; A B (s x d) computed once per batch"
    shares_prompt = True  # forward prepends the one (m, d) prompt, expanded over the batch (offsets go on the inputs)
    no_peft = "its low-rank offsets of the input embeddings are not a PEFT prompt"
    parts = ("offsets",)

    def __init__(self, cfg: DePTConfig, info: BackboneInfo, embed_rows: EmbedRows | None, seed: int) -> None:
        super().__init__(cfg, info, embed_rows, seed)
        d, r = info.hidden_size, resolve_rank(cfg, info.hidden_size)
        # Every tensor is a direct nn.Parameter of this module (ZeRO-3 gathers them when this forward runs),
        # stored in float32 and cast to the batch dtype when applied.
        self.prompt = nn.Parameter(init_short_prompt(cfg.init, embed_rows, cfg.num_tokens, info, seed))  # (m, d)
        # A (s, r) kaiming-uniform, B (r, d) zero (the offset starts at 0: DePT == PT), scale alpha / sqrt(r), as
        # the reference code (base.init_offset_factors).
        a, b, self.scaling = init_offset_factors(cfg.max_length, r, d, cfg.alpha, seed)
        self.lowrank_a, self.lowrank_b = nn.Parameter(a), nn.Parameter(b)

        self.align = resolve_align(cfg.align, info)

    def offset(self) -> torch.Tensor:
        """(s, d) float32 offset table alpha/sqrt(r) A B; row i belongs to input position i ('start') or to the
        (s-1-i)-th token before the label ('end')."""
        return self.scaling * (self.lowrank_a @ self.lowrank_b)

    def forward(self, batch: PromptBatch) -> PromptBatch:
        # The reference pads every input to exactly s tokens and adds all s rows of A B: right-padded on T5 (row i
        # is token i, 'start'), left-padded on decoders (the last source token always gets row s-1, 'end'). Our
        # batches are right-padded to their longest row, so base.add_position_offsets maps rows to tokens
        # explicitly; pads get offsets under 'start' (masked by attention, as in the code), none under 'end'.
        emb = add_position_offsets(batch, self.offset(), self.align)
        return prepend_prompt(PromptBatch(emb, batch.attention_mask, batch.labels), self.prompt)

    def zero_part(self, part: str) -> None:
        if part != "offsets":
            super().zero_part(part)
        with torch.no_grad():
            self.lowrank_b.zero_()  # A B = 0: the short prompt alone

    def param_groups(self) -> list[dict]:
        # rms_power (pipeline.methods.units): P and B live in embedding space (offsets = A B); A is a unit-free
        # mixing of B's rows, so its lr is the same on every backbone.
        return [
            {"params": [self.prompt], "lr": self.cfg.lr, "name": "prompt", "rms_power": 1},
            *offset_groups(self.lowrank_a, self.lowrank_b, self.cfg.lr_lowrank),
        ]

    @staticmethod
    def search_space() -> dict:
        # Grids of the released best runs (checkpoints/*/output.log): prompt lr {3e-1, 4e-1}, m in {40, 60, 80};
        # rank=None re-derives the equal-budget r for each m ((40,45), (60,30), (80,15) at d=768, s=256, the pairs
        # the released runs use). The A/B lr is the travel probe's (docs/results/ablation.md): at a few hundred
        # steps the released {1e-4 .. 5e-3} leave the offsets under 1.5% of the embedding scale (inert), 1e-2 ..
        # 3e-2 move them 7-40% with the lowest training loss.
        return {
            "method.lr": Choice((0.3, 0.4)),
            "method.lr_lowrank": Choice((1e-2, 2e-2, 3e-2)),
            "method.num_tokens": Choice((40, 60, 80)),
        }

    @staticmethod
    def paper_param_count(cfg: DePTConfig, info: BackboneInfo) -> int:
        d = info.hidden_size
        return cfg.num_tokens * d + resolve_rank(cfg, d) * (cfg.max_length + d)

    @staticmethod
    def budget_overrides(tokens: int) -> dict:
        """Equal-budget mode: rank derived so m*d + r*(s+d) <= tokens*d (the paper's PT-100 comparison)."""
        return {"budget_tokens": tokens, "rank": None}

