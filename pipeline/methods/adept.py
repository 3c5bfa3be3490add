"""Adaptive decomposed prompt tuning (ADePT): Tang et al., "ADePT: Adaptive Decomposed Prompt Tuning for
Parameter-Efficient Fine-tuning", ICLR 2025, arXiv:2501.03291.

A short prompt P in R^{m x d} and a token-shared feed-forward network W1 in R^{d x r}, b1 in R^r, W2 in R^{r x d},
b2 in R^d (W1 kaiming-uniform, the rest 0, so ADePT starts as PT). Each input token's offset depends on its own
(frozen) embedding, not on its position. For embedded inputs E in R^{B x L x d}:
    FFN(e) = relu(dropout(e W1 + b1)) W2 + b2      (every input position, padding included; float32)
    E' = E + FFN(E) in R^{B x L x d};  input [P; E'] in R^{B x (m+L) x d}, mask extended with ones.
Two learning rates: one for P, one for the FFN. Trainable parameters: m d + r (2d + 1) + d; rank=None takes the
largest r within PT's l d budget, floor(((l - m) d - d) / (2d + 1)) (m=60, r=19 at l=100, d=768: 76,051).
T5: only the encoder input changes; decoder-only: labels are padded with -100 over the prompt.

Provenance (paper, reference code, choices): docs/methods/adept.md
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.methods import register
from pipeline.methods.base import (
    BackboneInfo,
    Choice,
    EmbedRows,
    PromptBatch,
    PromptInit,
    PromptMethod,
    init_short_prompt,
    prepend_prompt,
)
from pipeline.schema import bounds


@dataclass
class ADePTConfig:
    num_tokens: int = field(default=60, metadata=bounds(0))
    """Short prompt length m (60 in the reference README script)."""
    rank: int | None = field(default=None, metadata=bounds(0))
    """FFN bottleneck r; None: the largest r with m*d + r*(2d+1) + d <= budget_tokens*d (19 at d=768, m=60)."""
    budget_tokens: int = field(default=100, metadata=bounds(1))
    """PT prompt length l whose l*d parameter budget rank=None stays within (the paper compares against l=100)."""
    dropout: float = field(default=0.1, metadata=bounds(0.0, 1.0))
    """Dropout on the FFN pre-activation e W1 + b1, training only (p=0.1 hard-coded in the reference)."""
    lr: float = field(default=0.3, metadata=bounds(0.0, lo_open=True, units="embedding"))
    """Learning rate of the short prompt P (3e-1 or 4e-1 in the reference README)."""
    lr_ffn: float = field(default=5e-4, metadata=bounds(0.0, lo_open=True, units="embedding"))
    """Learning rate of the FFN W1, b1, W2, b2, measured: offsets at ~30% of the embedding RMS over 300 steps (the
    travel probe: the reference README's 1e-4 gives ~7%, 3e-3 ~160%)."""
    init: PromptInit = "vocab"
    """Short prompt init, as PT: 'vocab', 'labels' (class labels) or 'random'."""


def resolve_rank(cfg: ADePTConfig, d: int) -> int:
    """cfg.rank, or the budget rank floor(((l - m) d - d) / (2d + 1)) clamped at 0 when cfg.rank is None."""
    if cfg.rank is not None:
        return cfg.rank
    return max(0, ((cfg.budget_tokens - cfg.num_tokens) * d - d) // (2 * d + 1))


@register("adept", ADePTConfig)
class ADePT(PromptMethod):
    """Adds a token-wise FFN offset to every input embedding, then prepends a short prompt."""

    paper = "ADePT, ICLR 2025, arXiv:2501.03291"
    inference_cost = "m extra tokens; d-r-d FFN on every input token"
    shares_prompt = True  # forward prepends the one (m, d) prompt, expanded over the batch (the FFN offsets inputs)
    no_peft = "its token-shared feed-forward offsets are not a PEFT prompt"
    parts = ("ffn",)

    def __init__(self, cfg: ADePTConfig, info: BackboneInfo, embed_rows: EmbedRows | None, seed: int) -> None:
        super().__init__(cfg, info, embed_rows, seed)
        d, r = info.hidden_size, resolve_rank(cfg, info.hidden_size)
        # Plain nn.Parameters (not an nn.Linear submodule): ZeRO-3 gathers a module's own parameters when its
        # forward runs, so the FFN weights must belong to this module. All float32, cast when applied.
        # The prompt init is PT's sampled-vocab init (the reference tiles a fixed text; see base.init_short_prompt).
        self.prompt = nn.Parameter(init_short_prompt(cfg.init, embed_rows, cfg.num_tokens, info, seed))  # (m, d)
        self.w1 = nn.Parameter(torch.zeros(d, r))  # down-projection
        self.b1 = nn.Parameter(torch.zeros(r))
        self.w2 = nn.Parameter(torch.zeros(r, d))  # up-projection: zero, so the offset starts at 0 (ADePT == PT)
        self.b2 = nn.Parameter(torch.zeros(d))
        if r > 0:
            # As in the code: kaiming on a (d, r) tensor reads fan_in = size(1) = r, so W1 ~ U(+-1/sqrt(r)) (not
            # nn.Linear's 1/sqrt(d)). A private generator keeps every rank's init identical.
            nn.init.kaiming_uniform_(self.w1, a=math.sqrt(5), generator=torch.Generator().manual_seed(seed))

    def offset(self, emb: torch.Tensor) -> torch.Tensor:
        """FFN(e) = relu(dropout(e W1 + b1)) W2 + b2 for every token, computed in float32: (..., d)."""
        # No scaling factor: the reference computes alpha/sqrt(r) but never uses it in this forward. Dropout
        # comes before the ReLU (inverted scaling), on in training only, as in the code.
        # addmm adds each bias inside its matrix product: one op forward and backward instead of a matmul and an add.
        x = emb.float().reshape(-1, emb.shape[-1])  # (N, d) with N = every token of the batch
        h = F.dropout(torch.addmm(self.b1, x, self.w1), p=self.cfg.dropout, training=self.training)  # (N, r)
        return torch.addmm(self.b2, F.relu(h), self.w2).view(*emb.shape[:-1], -1)

    def forward(self, batch: PromptBatch) -> PromptBatch:
        emb = batch.inputs_embeds
        # Every input position gets its offset, padding included (masked by attention), as in the reference;
        # the prompt tokens get none. No max length: nothing here depends on position.
        emb = emb + self.offset(emb).to(emb.dtype)
        return prepend_prompt(PromptBatch(emb, batch.attention_mask, batch.labels), self.prompt)

    def zero_part(self, part: str) -> None:
        if part != "ffn":
            super().zero_part(part)
        with torch.no_grad():
            self.w2.zero_()  # FFN(e) = relu(.) W2 + b2 = 0: the short prompt alone
            self.b2.zero_()

    def param_groups(self) -> list[dict]:
        # rms_power (pipeline.methods.units): relu is positively homogeneous, so FFN(c e) = c FFN(e) exactly when
        # b1 and b2 scale with the embeddings (they live in embedding units) and W1, W2 do not (unit-free maps):
        # the biases' lr follows the backbone's RMS, the weights' lr is the same on every backbone.
        return [
            {"params": [self.prompt], "lr": self.cfg.lr, "name": "prompt", "rms_power": 1},
            {"params": [self.w1, self.w2], "lr": self.cfg.lr_ffn, "name": "ffn_weights", "rms_power": 0},
            {"params": [self.b1, self.b2], "lr": self.cfg.lr_ffn, "name": "ffn_biases", "rms_power": 1},
        ]

    @staticmethod
    def search_space() -> dict:
        # The reference releases one script (m=60, r=19; prompt lr {3e-1, 4e-1}; FFN lr 1e-4) and no per-task
        # logs; we search its prompt-lr grid and the FFN lrs the travel probe puts at 10-50% of the embedding
        # scale over a few hundred steps (docs/results/ablation.md).
        return {"method.lr": Choice((0.3, 0.4)), "method.lr_ffn": Choice((2e-4, 5e-4, 1e-3))}

    @staticmethod
    def paper_param_count(cfg: ADePTConfig, info: BackboneInfo) -> int:
        d = info.hidden_size
        return cfg.num_tokens * d + resolve_rank(cfg, d) * (2 * d + 1) + d

    @staticmethod
    def budget_overrides(tokens: int) -> dict:
        """Equal-budget mode: FFN width derived so the total stays <= tokens*d (the paper's comparison)."""
        return {"budget_tokens": tokens, "rank": None}

