"""Low-parameters prompt tuning (LAMP): Lan, Xu et al., "Efficient and Effective Prompt Tuning via Prompt
Decomposition and Compressed Outer Product", NAACL 2025 (long), arXiv:2502.12200.

A prompt P0 in R^{l x d} (PT's init) is decomposed once by truncated SVD; its factors are then trained freely:
    U in R^{l x r}, q in R^r, V in R^{d x r} = top-r SVD of P0
    C0 = sum_i q_i u_i (x) v_i = U diag(q) V^T                       (the rank-r reconstruction)
    C  = C0 + sum_{i<j} w_ij (q_i + q_j)/2 (sqrt(l) u_i*u_j) (x) (sqrt(d) v_i*v_j)   in R^{l x d}
                                                                     (compressed outer product, see below)
    P* = AvgPool_{kernel=stride=pool}(C) along the length axis in R^{(l/pool) x d};  input [P*; X]
with X in R^{B x L x d} the embedded input, * the element-wise product, (x) the outer product, and the attention
mask extended with ones over P*. The second sum is an optional interaction term (`interactions`, off by default:
no source describes it, and it mixes components within a token, not prompt tokens): every pair of rank components
multiplies into a new rank-1 term, so C reaches rank r(r+1)/2 (36 at r=8) from r(r-1)/2 extra weights; the plain
U diag(q) V^T is rank r whatever is trained, i.e. exactly a truncated SVD, and makes no component interact.
Trainable parameters: r (l + d + 1) (+ r(r-1)/2 with interactions); 6,952 at l=100, r=8, d=768 (PT's 76,800 / 11;
the ~7K reported), 6,980 with interactions.
T5: the prompt goes on the encoder input; decoder-only: labels are padded with -100 over it.

Provenance (paper, reference code, choices): docs/methods/lamp.md
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
from pipeline.schema import ConfigError, bounds


@dataclass
class LAMPConfig:
    num_tokens: int = field(default=100, metadata=bounds(1))
    """Length l of the decomposed prompt before pooling (PT's 100)."""
    rank: int = field(default=8, metadata=bounds(1))
    """Truncated-SVD rank r, at most min(l, d) (8: 6,952 at d=768, the ~7K a summary quotes)."""
    pool: int = field(default=2, metadata=bounds(1))
    """Average-pooling kernel = stride along the prompt length; must divide num_tokens; l/pool tokens are added."""
    lr: float = field(default=1e-2, metadata=bounds(0.0, lo_open=True, units="embedding"))
    """Learning rate of U, q and V (U and V have unit columns on any backbone; q's lr follows the embedding RMS)."""
    init: PromptInit = "vocab"
    """Prompt P0 decomposed at build, as PT: 'vocab', 'labels' (class labels) or 'random'."""
    interactions: bool = False
    """Pairwise products of the rank components, a term no source describes (CHOICE, off by default): C = C0 + sum
    w_ij ...; False (default): C = U diag(q) V^T, the decomposition and compressed product the sources state."""

    def __post_init__(self) -> None:
        check_pool(self)  # reject a bad pool at config load, before any trial starts


def check_pool(cfg: LAMPConfig) -> None:
    """One-line ConfigError unless pool divides num_tokens."""
    if cfg.pool < 1 or cfg.num_tokens % cfg.pool:
        ok = [p for p in range(1, cfg.num_tokens + 1) if cfg.num_tokens % p == 0]
        raise ConfigError(f"lamp: pool={cfg.pool} does not divide num_tokens={cfg.num_tokens}; "
                          f"expected a divisor of {cfg.num_tokens}: {ok}")


@register("lamp", LAMPConfig)
class LAMP(PromptMethod):
    """Prepends the average-pooled compressed outer product of an SVD-decomposed prompt's rank components."""

    paper = "Lan, Xu et al., NAACL 2025, arXiv:2502.12200"
    inference_cost = "l/pool extra tokens; U diag(q) V^T once per batch"
    shares_prompt = True  # forward prepends the one (l/pool, d) pooled prompt, expanded over the batch
    no_peft = "its compressed outer-product prompt is not a PEFT prompt table"

    def __init__(self, cfg: LAMPConfig, info: BackboneInfo, embed_rows: EmbedRows | None, seed: int) -> None:
        super().__init__(cfg, info, embed_rows, seed)
        check_pool(cfg)  # also here: a config mutated after construction is not re-validated
        n, d, r = cfg.num_tokens, info.hidden_size, cfg.rank
        if not 1 <= r <= min(n, d):
            raise ConfigError(f"lamp: rank={r} must be in [1, min(num_tokens={n}, hidden_size={d})={min(n, d)}]")
        # CHOICE (initial P unknown): PT's init for the same (init, seed) (base.init_short_prompt), so full rank
        # with pool=1 starts exactly from PT's prompt. The SVD runs once, in float64 for an accurate
        # reconstruction, then U, q, V are free float32 parameters (no orthogonality is enforced: none is stated).
        # When loading a saved prompt P0 is zeros and the stored factors overwrite whatever the SVD gives.
        p0 = init_short_prompt(cfg.init, embed_rows, n, info, seed).double()
        u, s, vh = torch.linalg.svd(p0, full_matrices=False)
        # CHOICE: q is a vector of r singular values (storing diag(Q) as r x r would add r^2 - r dead parameters).
        # Every tensor is a direct nn.Parameter of this module (ZeRO-3), float32, cast when prepended.
        self.u = nn.Parameter(u[:, :r].float().contiguous())  # (l, r)
        self.q = nn.Parameter(s[:r].float().contiguous())  # (r,)
        self.v = nn.Parameter(vh[:r].T.float().contiguous())  # (d, r)
        # CHOICE (the interaction module's form is not reachable; only "a compressed outer product module to
        # facilitate multiple interactions among prompt tokens" is): one weight per pair i < j of rank components,
        # zero at init so C starts as the truncated SVD of PT's prompt (and pool=1, full rank starts as PT).
        self.pairs = r * (r - 1) // 2 if cfg.interactions else 0
        if self.pairs:
            self.w = nn.Parameter(torch.zeros(self.pairs))  # (r(r-1)/2,) unitless mixing weights

    def reconstructed(self) -> torch.Tensor:
        """(l, d) float32 compressed outer product C (module docstring): C0 plus the pairwise interaction terms."""
        # CHOICE (M, I of the summary): M = U diag(q) (l x r), I = V^T (r x d); where q sits does not change C.
        # One (l, r) @ (r, d) product sums the r rank-1 outer products without materialising them ("compressed").
        c = (self.u * self.q) @ self.v.T
        if not self.pairs:
            return c
        i, j = torch.triu_indices(self.cfg.rank, self.cfg.rank, offset=1, device=self.u.device)  # (k,) each
        n, d = self.u.shape[0], self.v.shape[0]
        # CHOICE: sqrt(l), sqrt(d) give u_i*u_j and v_i*v_j about unit norm like u_i and v_i, and (q_i + q_j)/2
        # carries the prompt's scale, so w is unitless on any backbone (rms_power 0) and an Adam step on w moves
        # an interaction term as far, relative to C0, as a step on U or V moves a component.
        left = self.u[:, i] * self.u[:, j] * n ** 0.5  # (l, k)
        right = self.v[:, i] * self.v[:, j] * d ** 0.5  # (d, k)
        return c + (left * (self.w * (self.q[i] + self.q[j]) / 2)) @ right.T

    def pooled(self) -> torch.Tensor:
        """(l / pool, d) float32 prompt: mean of each block of `pool` consecutive rows of C."""
        # CHOICE (kernel, stride and axis unknown): non-overlapping blocks (kernel = stride = pool) along the
        # prompt length, the only axis where pooling shortens the input and so saves memory and time.
        c = self.reconstructed()
        return c.view(c.shape[0] // self.cfg.pool, self.cfg.pool, c.shape[1]).mean(dim=1)

    def forward(self, batch: PromptBatch) -> PromptBatch:
        return prepend_prompt(batch, self.pooled())

    def param_groups(self) -> list[dict]:
        # CHOICE (optimiser setup unknown): one group. PT's lr 0.3 would move U (entries ~1/sqrt(l)) and V
        # (~1/sqrt(d)) by far more than their own scale in one Adam step. Measured on SmolLM2-135M, SST-2, batch 8,
        # r=8 (train loss after 15 AdamW steps, from ~16): pool 2: 11.4 at lr 3e-3, 2.1 at 1e-2; pool 1: 1.4 at
        # 3e-3, 1.7 at 3e-2 (prompt rows grown to ~4x an embedding's norm); at 1e-3 two 20-25-step trials stayed
        # near the frozen loss. Hence a default of 1e-2.
        # rms_power (pipeline.methods.units): U and V have unit columns on any backbone; q (the singular values)
        # carries the prompt's scale, so its lr follows the embedding RMS.
        factors = [self.u, self.v] + ([self.w] if self.pairs else [])
        return [{"params": factors, "lr": self.cfg.lr, "name": "factors", "rms_power": 0},
                {"params": [self.q], "lr": self.cfg.lr, "name": "scales", "rms_power": 1}]

    @staticmethod
    def search_space() -> dict:
        # CHOICE (the paper's grids are unknown): lr within ~3x of the default (below 3e-3 pooled prompts barely
        # leave the frozen loss in a short trial, see param_groups), r around the reported 8, and pool in {1, 2, 4}
        # (all divide the default l=100, so every sample is a valid config).
        return {
            "method.lr": LogUniform(3e-3, 3e-2),
            "method.rank": Choice((4, 8, 16)),
            "method.pool": Choice((1, 2, 4)),
        }

    @staticmethod
    def paper_param_count(cfg: LAMPConfig, info: BackboneInfo) -> int:
        return cfg.rank * (cfg.num_tokens + info.hidden_size + 1) + (cfg.rank * (cfg.rank - 1) // 2
                                                                     if cfg.interactions else 0)

    @staticmethod
    def budget_overrides(tokens: int) -> dict:
        """Equal-budget mode: the prompt is `tokens` long; its r(l+d+1) parameters stay far below tokens*d."""
        return {"num_tokens": tokens}

    @staticmethod
    def num_virtual_tokens(cfg: LAMPConfig) -> int:
        return cfg.num_tokens // cfg.pool
