"""Vanilla prompt tuning (PT): Lester, Al-Rfou & Constant 2021, "The Power of Scale for Parameter-Efficient
Prompt Tuning", arXiv:2104.08691.

A trainable prompt P in R^{n x d} (sampled-vocabulary init, or U(-0.5, 0.5)) is prepended to the embedded input
X in R^{B x L x d}:
    input [P; X] in R^{B x (n+L) x d}, attention mask extended with ones over the prompt.
Only P is trained. Trainable parameters: n d (76,800 at n=100, d=768: the budget the other methods match).
T5: the prompt goes on the encoder input; decoder-only: labels are padded with -100 over it.

Provenance (paper, reference code, choices): docs/methods/pt.md
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from pipeline.methods import register
from pipeline.methods.base import (
    BackboneInfo,
    Choice,
    EmbedRows,
    LogUniform,
    PromptBatch,
    PromptInit,
    PromptMethod,
    init_short_prompt,
    prepend_prompt,
)
from pipeline.schema import bounds


@dataclass
class PTConfig:
    num_tokens: int = field(default=100, metadata=bounds(1))
    """Soft prompt length n (Lester et al. use 100 for their headline results)."""
    lr: float = field(default=0.3, metadata=bounds(0.0, lo_open=True, units="embedding"))
    """Learning rate of the prompt (0.3 in Lester et al. Sec. 3)."""
    init: PromptInit = "vocab"
    """'vocab': sampled vocabulary (Sec. 2.2); 'labels': the class labels (Sec. 3.2); 'random': U(-0.5, 0.5)."""


@register("pt", PTConfig)
class PromptTuning(PromptMethod):
    """Prepends a trainable (n, d) prompt to every input."""

    paper = "Lester et al. 2021, arXiv:2104.08691"
    inference_cost = "n extra tokens per sequence"
    shares_prompt = True  # forward prepends the one (n, d) table, expanded over the batch

    def __init__(self, cfg: PTConfig, info: BackboneInfo, embed_rows: EmbedRows | None, seed: int) -> None:
        super().__init__(cfg, info, embed_rows, seed)
        # (n, d) float32, cast to the batch dtype when prepended; 'vocab': sampled vocabulary rows, 'random':
        # U(-0.5, 0.5) (base.init_short_prompt, the init every decomposed method starts from too)
        self.prompt = nn.Parameter(init_short_prompt(cfg.init, embed_rows, cfg.num_tokens, info, seed))

    def forward(self, batch: PromptBatch) -> PromptBatch:
        return prepend_prompt(batch, self.prompt)

    def param_groups(self) -> list[dict]:
        # rms_power 1: the prompt lives in embedding space (pipeline.methods.units).
        return [{"params": [self.prompt], "lr": self.cfg.lr, "name": "prompt", "rms_power": 1}]

    def peft_prompt(self) -> torch.Tensor:
        """PT's (n, d) prompt is exactly PEFT's PromptEmbedding table (prepended to the (encoder) input, mask 1)."""
        return self.prompt

    @staticmethod
    def search_space() -> dict:
        # Lester et al. Fig. 3(a) sweep prompt lengths {1, 5, 20, 100, 150}; lr around their 0.3.
        return {"method.num_tokens": Choice((5, 20, 100, 150)), "method.lr": LogUniform(0.03, 1.0)}

    @staticmethod
    def paper_param_count(cfg: PTConfig, info: BackboneInfo) -> int:
        return cfg.num_tokens * info.hidden_size

    @staticmethod
    def budget_overrides(tokens: int) -> dict:
        """Equal-budget mode: PT *is* the budget, tokens * d parameters."""
        return {"num_tokens": tokens}

