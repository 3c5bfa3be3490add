"""Efficient prompt tuning (EPT): Lan et al., "Efficient Prompt Tuning by Multi-Space Projection and Prompt
Fusion", AAAI 2025, arXiv:2405.11464 (v3).

DePT's short prompt P in R^{m x d} and low-rank offsets A in R^{s x r}, B in R^{r x d} (built exactly as
pipeline.methods.dept), with the prompt fused with B and re-projected over N rank-k subspaces. For embedded
inputs E in R^{B x L x d}:
    E'[:, i] = E[:, i] + alpha/sqrt(r) (A B)[row(i)]                (offsets and their alignment, as DePT)
    F   = softmax(P B^T / (sqrt(d) rms(P) rms(B))) B              (prompt fusion; 0 when fusion=False)
    M(X) = sum_k G(X)[:, k] * (X D_k) U_k,  G(X) = softmax(X W_g)   (multi-space projection, per-token gate;
                                                                      D_k in R^{d x k}, U_k in R^{k x d} = 0 at init)
    P*  = P + F + M(P)        composition='parallel' (default: both branches read P, Figure 2)
    P*  = P_f + M(P_f), P_f = P + F                   composition='chained' (fusion, then projection)
and the input is [P*; E'] in R^{B x (m+L) x d}. B = 0 and U_k = 0 at init, so EPT starts exactly as DePT with
the same seed, and with num_spaces=1, fusion=False it *is* DePT while the up-projection stays zero.
Three learning rates: P, (A, B), and the projections with the gate.
Parameters: m d + r (s + d) + N 2 d k + [N > 1 and k > 0] d N; rank=None takes the largest r within PT's l d
budget (defaults m=60, N=4, k=2 at d=768, s=256: r=15, 46,080 + 15,360 + 12,288 + 3,072 = 76,800).
T5: only the encoder input changes; decoder-only: labels are padded with -100 over the prompt.
The paper's 4-bit quantised backbone is a backbone setting (backbone.quantization), not part of this method.

Provenance (paper, reference code, choices): docs/methods/ept.md
"""

from __future__ import annotations

import dataclasses
import math
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
class EPTConfig:
    num_tokens: int = field(default=60, metadata=bounds(0))
    """Short prompt length m (DePT's main setting; EPT's own value is unknown)."""
    rank: int | None = field(default=None, metadata=bounds(0))
    """Rank r of A B; None: the largest r keeping all parameters <= budget_tokens*d (15 at d=768, defaults)."""
    budget_tokens: int = field(default=100, metadata=bounds(1))
    """PT prompt length l whose l*d parameter budget rank=None matches (PT's 100 tokens)."""
    max_length: int = field(default=256, metadata=bounds(1))
    """s: rows of A = leading input positions that get an offset (as DePT)."""
    alpha: float = field(default=8.0, metadata=bounds(0.0))
    """Offset scale numerator: E' = E + alpha/sqrt(r) * A B (as DePT's reference code)."""
    fusion: bool = True
    """Prompt fusion: P_f = P + softmax(P B^T / (sqrt(d) rms(P) rms(B))) B (parameter-free attention over B's rows)."""
    num_spaces: int = field(default=4, metadata=bounds(1))
    """N subspace projections mixed by the gate (1: no gate, the single space has weight 1)."""
    space_rank: int = field(default=2, metadata=bounds(0))
    """k: rank of each subspace projection D_k U_k (0 disables the multi-space projection)."""
    composition: Literal["parallel", "chained"] = "parallel"
    """'parallel': fusion and projection both read the short prompt and are summed onto it (the paper's
    Figure 2); 'chained': the projection reads the fused prompt."""
    lr: float = field(default=0.3, metadata=bounds(0.0, lo_open=True, units="embedding"))
    """Learning rate of the short prompt P (DePT's 3e-1)."""
    lr_lowrank: float = field(default=3e-2, metadata=bounds(0.0, lo_open=True, units="embedding"))
    """Learning rate of A and B, as DePT's (measured by the travel probe)."""
    lr_proj: float = field(default=1e-3, metadata=bounds(0.0, lo_open=True, units="embedding"))
    """Learning rate of the projections D_k, U_k and the gate W_g, measured: 3e-3 moves the projection ~60% of the
    embedding RMS over 300 steps, 3e-2 over 100% within 30 steps (the travel probe)."""
    init: PromptInit = "vocab"
    """Short prompt init, as PT: 'vocab', 'labels' (class labels) or 'random'."""
    align: Literal["auto", "start", "end"] = "auto"
    """Offset rows to tokens, as DePT: 'end' counts back from the last source token; 'auto': 'end' on decoders."""


def rms(x: torch.Tensor) -> torch.Tensor:
    """() root mean square of `x`'s entries, floored at 1e-12 so an all-zero B (its init) gives finite logits and
    gradients (the floor goes before the square root, whose derivative at 0 is infinite)."""
    return x.pow(2).mean().clamp_min(1e-24).sqrt()


def has_gate(cfg: EPTConfig) -> bool:
    """The gate exists only when there is something to mix: more than one space of positive rank."""
    return cfg.num_spaces > 1 and cfg.space_rank > 0


def projection_params(cfg: EPTConfig, d: int) -> int:
    """Parameters of the multi-space projection: N (d k + k d) plus the gate's d N."""
    return cfg.num_spaces * 2 * d * cfg.space_rank + (d * cfg.num_spaces if has_gate(cfg) else 0)


def resolve_rank(cfg: EPTConfig, d: int) -> int:
    """cfg.rank, or the largest r with m d + r (s + d) + projection <= l d, clamped at 0, when cfg.rank is None.

    Defaults at d=768, s=256: 60*768 + 15*1024 + 4*2*768*2 + 768*4 = 46,080 + 15,360 + 12,288 + 3,072 = 76,800,
    exactly PT's 100*768 budget.
    """
    if cfg.rank is not None:
        return cfg.rank
    free = (cfg.budget_tokens - cfg.num_tokens) * d - projection_params(cfg, d)
    return max(0, free // (cfg.max_length + d))


@register("ept", EPTConfig)
class EPT(PromptMethod):
    """DePT's short prompt + low-rank offsets, with the prompt fused with B and re-projected over N subspaces."""

    paper = "Lan et al., AAAI 2025, arXiv:2405.11464"
    inference_cost = "m extra tokens; offsets + fused prompt once per batch"
    shares_prompt = True  # forward prepends the one (m, d) joint prompt, expanded over the batch (inputs get offsets)
    no_peft = "its multi-space projections and prompt fusion are not a PEFT prompt"
    parts = ("offsets", "fusion", "projection")

    def __init__(self, cfg: EPTConfig, info: BackboneInfo, embed_rows: EmbedRows | None, seed: int) -> None:
        super().__init__(cfg, info, embed_rows, seed)
        d, r, n, k = info.hidden_size, resolve_rank(cfg, info.hidden_size), cfg.num_spaces, cfg.space_rank
        # Every tensor is a direct nn.Parameter of this module (ZeRO-3 gathers them when this forward runs),
        # stored in float32 and cast to the batch dtype when applied. P, A, B and the offset scale are built
        # exactly as DePT's (same generators), so EPT and DePT with the same seed start from the same tensors.
        self.prompt = nn.Parameter(init_short_prompt(cfg.init, embed_rows, cfg.num_tokens, info, seed))  # (m, d)
        a, b, self.scaling = init_offset_factors(cfg.max_length, r, d, cfg.alpha, seed)  # B = 0: no offset, no fusion
        self.lowrank_a, self.lowrank_b = nn.Parameter(a), nn.Parameter(b)  # (s, r), (r, d)
        self.align = resolve_align(cfg.align, info)
        # CHOICE (projection shape unknown): each space is a rank-k map D_k U_k of the prompt rows, LoRA-style
        # (full d x d maps would cost 2*d^2 per space, 15x PT's whole budget at d=768). D_k ~ U(+-1/sqrt(d))
        # (nn.Linear's default for d inputs), from its own generator seed+1 so A's init is unchanged; U_k = 0
        # so the projection adds nothing at init and training starts from DePT's prompt.
        self.proj_down = nn.Parameter(torch.zeros(n, d, k))  # D_k stacked: (N, d, k)
        self.proj_up = nn.Parameter(torch.zeros(n, k, d))  # U_k stacked: (N, k, d)
        if k > 0:
            bound = 1.0 / math.sqrt(d)
            nn.init.uniform_(self.proj_down, -bound, bound, generator=torch.Generator().manual_seed(seed + 1))
        # CHOICE (gate input/form unknown): a per-token linear gate W_g in R^{d x N}, softmax over spaces, no
        # bias. The prompt is the same for every example, so a gate on the pooled prompt would be N constant
        # logits; per token, each prompt token picks its own mix. W_g = 0 -> uniform 1/N weights at init.
        # With one space (or k=0) a gate has nothing to choose and is not created (no dead parameters).
        if has_gate(cfg):
            self.gate_w = nn.Parameter(torch.zeros(d, n))  # (d, N)
        else:
            self.register_parameter("gate_w", None)

    def offset(self) -> torch.Tensor:
        """(s, d) float32 offset table alpha/sqrt(r) A B, mapped to tokens as DePT's (`align`)."""
        return self.scaling * (self.lowrank_a @ self.lowrank_b)

    def fused_prompt(self) -> torch.Tensor:
        """(m, d) P_f = P + softmax(P B^T / (sqrt(d) rms(P) rms(B))) B, or P when fusion is off."""
        p = self.prompt
        if not self.cfg.fusion or self.lowrank_b.shape[0] == 0:  # r = 0 (a budget with no room): nothing to attend
            return p  # over, and rms() of the empty B is 0/0 = NaN, which reached P's gradient through the scale
        # CHOICE (fusion equation unknown; summaries: "attention", the paper apparently writes it with einsum):
        # prompt tokens are queries, the r rows of B (the low-rank factor that lives in embedding space) are
        # keys and values; scaled dot-product, residual add, no learned W_Q/W_K/W_V (3 d^2 = 1.77M parameters
        # at d=768 would dwarf PT's budget). B = 0 at init gives uniform attention over zero rows: P_f = P.
        # CHOICE (scale): the logits are taken after bringing P and B to unit RMS, i.e. P B^T / (sqrt(d) rms(P)
        # rms(B)). Plain P B^T / sqrt(d) grows as the square of the embedding scale: on SmolLM2 (RMS 0.136) its
        # logits stayed within +-0.1 for any B a run reaches (largest weight 0.072 against 0.067 uniform: it only
        # added the mean of B's rows), on T5 (RMS ~10) it is an argmax. Unit-RMS logits are the same on every
        # backbone (pipeline.methods.units) and reach +-sqrt(d) for aligned rows (24 at d = 576).
        b = self.lowrank_b
        scale = math.sqrt(p.shape[1]) * rms(p) * rms(b)  # () embedding-units^2 x sqrt(d)
        att = torch.softmax(p @ b.T / scale, dim=-1)  # (m, r); B = 0: logits 0 / eps = 0, uniform over zero rows
        return p + att @ b

    def gate_weights(self, fused: torch.Tensor) -> torch.Tensor:
        """(m, N) combination weights of the spaces per prompt token; every row sums to 1."""
        if self.gate_w is None:
            return fused.new_full((fused.shape[0], self.cfg.num_spaces), 1.0 / self.cfg.num_spaces)
        return torch.softmax(fused @ self.gate_w, dim=-1)

    def joint_prompt(self) -> torch.Tensor:
        """(m, d) float32 joint prompt P* = P + F + M(P) ('parallel') or P_f + M(P_f) ('chained')."""
        # CHOICE (composition): Figure 2's caption has the projection module map "the short prompt" to the
        # subspaces while the fusion module enhances it, and then a joint representation is generated: two
        # branches on P, joined. The join is a residual sum (a replacement would discard the vocabulary init
        # while U_k and B start at 0). 'chained' (fusion first, as this module did before) stays an option.
        fused = self.fused_prompt()
        src = fused if self.cfg.composition == "chained" else self.prompt
        # The gate weight of a space scales that space's k-dim code, so all N spaces collapse into one
        # (m, N k) @ (N k, d) product; the N separate (m, d) projections are never materialised.
        codes = torch.matmul(src, self.proj_down) * self.gate_weights(src).T.unsqueeze(-1)  # (N, m, k)
        n, m, k = codes.shape
        return fused + codes.transpose(0, 1).reshape(m, n * k) @ self.proj_up.reshape(n * k, src.shape[1])

    def forward(self, batch: PromptBatch) -> PromptBatch:
        # Offsets exactly as DePT (see pipeline.methods.dept.DePT.forward); T5: only the encoder input is changed.
        emb = add_position_offsets(batch, self.offset(), self.align)
        return prepend_prompt(PromptBatch(emb, batch.attention_mask, batch.labels), self.joint_prompt())

    def zero_part(self, part: str) -> None:
        if part not in self.parts:
            super().zero_part(part)
        with torch.no_grad():
            if part == "offsets":
                self.lowrank_a.zero_()  # A B = 0; B still feeds the fusion
            elif part == "projection":
                self.proj_up.zero_()  # M(X) = 0
        if part == "fusion":
            self.cfg = dataclasses.replace(self.cfg, fusion=False)

    def param_groups(self) -> list[dict]:
        # rms_power (pipeline.methods.units): P and B live in embedding space; A and the rank-k maps D_k, U_k are
        # unit-free (P_f D_k U_k already carries P's scale); the gate reads P_f into softmax logits, so its
        # weights scale as 1/RMS for the gate to pick the same mix on every backbone.
        groups = [
            {"params": [self.prompt], "lr": self.cfg.lr, "name": "prompt", "rms_power": 1},
            *offset_groups(self.lowrank_a, self.lowrank_b, self.cfg.lr_lowrank),
            # CHOICE (the paper's optimiser setup is unknown): the projection and gate get their own lr.
            {"params": [self.proj_down, self.proj_up], "lr": self.cfg.lr_proj, "name": "projection", "rms_power": 0},
        ]
        if self.gate_w is not None:
            groups.append({"params": [self.gate_w], "lr": self.cfg.lr_proj, "name": "gate", "rms_power": -1})
        return groups

    @staticmethod
    def search_space() -> dict:
        # CHOICE (EPT's grids are unknown): DePT's released prompt-lr grid and DePT's probe-measured (A, B) lrs,
        # the projection lrs the travel probe puts at 10-60% of the embedding scale, and N in {2, 4} (rank=None
        # re-derives r for each N: 22 and 15 at d=768).
        return {
            "method.lr": Choice((0.3, 0.4)),
            "method.lr_lowrank": Choice((1e-2, 2e-2, 3e-2)),
            "method.lr_proj": Choice((3e-4, 1e-3, 3e-3)),
            "method.num_spaces": Choice((2, 4)),
        }

    @staticmethod
    def paper_param_count(cfg: EPTConfig, info: BackboneInfo) -> int:
        d = info.hidden_size
        return cfg.num_tokens * d + resolve_rank(cfg, d) * (cfg.max_length + d) + projection_params(cfg, d)

    @staticmethod
    def budget_overrides(tokens: int) -> dict:
        """Equal-budget mode: rank derived so all parameters stay <= tokens*d."""
        return {"budget_tokens": tokens, "rank": None}

