"""The prompt-method plugin contract (`PromptMethod`) and the helpers several methods share.

A method is a `PromptMethod` subclass registered with `@register(name, ConfigClass)` in its own file, built as
`cls(cfg, info, embed_rows, seed)`. Saving/loading (`pipeline.artifact`) works on any method through its
config and `state_dict`. A method file imports this module and the registry, never a sibling method.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn


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
    quantization: str = "none"
    """Weight quantisation the backbone was loaded with ('none', 'nf4', 'fp4', 'int8'); a prompt transfers across."""
    dtype: str = "float32"
    """Dtype the backbone was loaded in (older artifacts record it in their `encoding`)."""

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


# Ray-free search-space specs; pipeline.tune converts them to ray.tune distributions. Sampled learning rates are
# config values like any other: in embedding units unless train.lr_units=absolute (pipeline.methods.units).
@dataclass(frozen=True)
class Choice:
    """Pick one of `values` uniformly."""

    values: tuple


@dataclass(frozen=True)
class LogUniform:
    """Sample log-uniformly in [lo, hi]."""

    lo: float
    hi: float


@dataclass(frozen=True)
class Uniform:
    """Sample uniformly in [lo, hi]."""

    lo: float
    hi: float


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
    that favours frequent tokens (sentencepiece and BPE vocabularies are roughly frequency-ordered), leaving out
    the tokenizer's special ids (`embed_rows.special_ids`: SmolLM2's 17 chat/control tokens sit at ids 0-16, and
    without the exclusion a 100-token prompt would start with one of them about 29% of the time). Without an
    embedding (loading a saved prompt) the tensor is zeros and is overwritten by the stored weights.
    """
    if embed_rows is None:
        return torch.zeros(n, d)
    special = getattr(embed_rows, "special_ids", frozenset())
    candidates = torch.tensor([i for i in range(min(vocab_size, 5000)) if i not in special])
    gen = torch.Generator().manual_seed(seed)
    ids = candidates[torch.randint(0, len(candidates), (n,), generator=gen)]
    return embed_rows(ids).detach().float().clone()


def count_trainable(module: torch.nn.Module) -> int:
    """Number of elements over parameters that require grad (ZeRO-3-safe via ds_numel when partitioned)."""
    return sum(getattr(p, "ds_numel", p.numel()) for p in module.parameters() if p.requires_grad)


PromptInit = Literal["vocab", "random", "labels"]
"""How a short prompt starts: 'vocab' sampled vocabulary, 'random' U(-0.5, 0.5), 'labels' the class labels."""


def init_from_labels(embed_rows: EmbedRows | None, n: int, vocab_size: int, d: int, seed: int) -> Tensor:
    """(n, d) float32 init: one row per class label, the mean of its tokens' embeddings, the rest sampled vocab.

    Lester et al. 2021, Sec. 3.2 ("class label" init, their best init at every model size they compare): "we
    initialize the prompt with embeddings that enumerate the output classes ... When a class label is multi-token,
    we average the token embeddings ... we often run out of class labels before we have initialized all of the
    prompt tokens. In this case we fall back to our sampled vocab strategy". `embed_rows.label_ids` holds the label
    words' target tokens (pipeline.data.encode.Encoder.target_tokens), in the task's label order.
    CHOICE: with more labels than prompt tokens (77 intents, 20 tokens), the first n labels in that order.
    """
    if embed_rows is None:
        return torch.zeros(n, d)
    words = [ids for ids in getattr(embed_rows, "label_ids", ()) if ids][:n]
    if not words:
        raise ValueError("method init='labels' needs a classification task's label words; expected "
                         "data.task.kind=classification or init='vocab'")
    rows = torch.stack([embed_rows(torch.tensor(ids)).mean(0) for ids in words])
    rest = init_from_vocab(embed_rows, n - len(words), vocab_size, d, seed)
    return torch.cat([rows, rest]).float()


def init_short_prompt(init: str, embed_rows: EmbedRows | None, m: int, info: BackboneInfo, seed: int) -> Tensor:
    """(m, d) float32 prompt init, identical to PT's for the same (init, seed), so DePT/ADePT/EPT/LAMP start as PT.

    'vocab': PT's sampled-vocab init (Lester et al. Sec. 2.2); 'labels': class-label init (Sec. 3.2,
    `init_from_labels`); 'random': U(-0.5, 0.5). (DePT's reference code initialises from the text "Classify this
    text is postive or not:" tiled to m, train.py:198-205; there is no per-task init text here.)
    """
    if init == "vocab":
        return init_from_vocab(embed_rows, m, info.vocab_size, info.hidden_size, seed)
    if init == "labels":
        return init_from_labels(embed_rows, m, info.vocab_size, info.hidden_size, seed)
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(m, info.hidden_size, generator=gen) - 0.5


def init_offset_factors(s: int, r: int, d: int, alpha: float, seed: int) -> tuple[Tensor, Tensor, float]:
    """(A (s, r), B (r, d), scale) of DePT's position offsets alpha/sqrt(r) A B (DePT and EPT alike).

    As the reference (`peft/tuners/prompt_tuning_lora.py:131-139`): A kaiming_uniform_(a=sqrt(5)), which reads
    fan_in = size(1) = r, i.e. A ~ U(-1/sqrt(r), 1/sqrt(r)); B = 0, so the offset starts at 0 and the method as
    PT; scale lora_alpha / sqrt(r) (the paper writes E + A B: keeping the code's factor lets the released lrs
    transfer); r = 0: no offset (scale 0). A private generator keeps every rank's init identical without touching
    the global RNG."""
    a, b = torch.zeros(s, r), torch.zeros(r, d)
    if r > 0:
        nn.init.kaiming_uniform_(a, a=math.sqrt(5), generator=torch.Generator().manual_seed(seed))
    return a, b, (alpha / math.sqrt(r) if r > 0 else 0.0)


def offset_groups(a: nn.Parameter, b: nn.Parameter, lr: float) -> list[dict]:
    """Param groups of DePT-style offset factors: A is unit-free, B lives in embedding space (rms_power 0 / 1)."""
    return [{"params": [a], "lr": lr, "name": "lowrank_a", "rms_power": 0},
            {"params": [b], "lr": lr, "name": "lowrank_b", "rms_power": 1}]


def add_leading_offsets(emb: Tensor, off: Tensor) -> Tensor:
    """(B, L, d) embeddings with `off` (n <= L, d) added to positions 0 .. n-1 and nothing added after them (the
    DePT-style position-wise offset of the first input tokens)."""
    # One broadcast add over the whole batch: zero rows past n are cheaper than slicing the batch, adding to the
    # slice and concatenating it back (which copies every embedding once more, and again in backward).
    return emb + F.pad(off, (0, 0, 0, emb.shape[1] - off.shape[0]))


def source_lengths(batch: PromptBatch) -> Tensor:
    """(B,) source tokens per row of a decoder-only batch: positions before the first label (labels -100 over the
    source), or every real token when the batch carries no labels (free generation)."""
    real = batch.attention_mask.sum(1)
    if batch.labels is None:
        return real
    is_label = batch.labels != -100  # (B, L)
    first = torch.where(is_label.any(1), is_label.float().argmax(1), real)
    return first.to(real.dtype)


def resolve_align(align: str, info: BackboneInfo) -> str:
    """'start' or 'end' for `align` over backbone `info` ('auto': end-aligned on decoders, as the reference)."""
    if align != "auto":
        return align
    return "start" if info.is_seq2seq else "end"


def add_position_offsets(batch: PromptBatch, table: Tensor, align: str) -> Tensor:
    """(B, L, d) input embeddings plus rows of a position-offset table (s, d) (DePT's A B, EPT's offsets).

    'start': row i goes to input position i (i < s), as the reference's right-padded encoder inputs.
    'end': rows are counted back from the last source token, which always gets row s-1 (the reference's decoder
    path at test time left-pads "<source> Label : " to s tokens, so the tokens next to the label always get the
    same rows); a source longer than s loses offsets on its first tokens, and label tokens get none. CHOICE: the
    reference trains on "<source> Label : <target><pad>" left-padded to s, so its training offsets also cover the
    label tokens and the source's rows shift by the label's length; here training uses the test-time rows."""
    emb = batch.inputs_embeds
    table = table.to(emb.dtype)
    if align == "start":
        return add_leading_offsets(emb, table[: min(emb.shape[1], table.shape[0])])
    s = table.shape[0]
    pos = torch.arange(emb.shape[1], device=emb.device)  # (L,)
    row = s - source_lengths(batch)[:, None] + pos[None, :]  # (B, L) table row of every position
    valid = (row >= 0) & (pos[None, :] < source_lengths(batch)[:, None])  # source tokens within the s rows
    off = table[row.clamp(0, s - 1)] * valid[..., None].to(emb.dtype)  # (B, L, d)
    return emb + off


class PromptMethod(nn.Module):
    """A soft-prompt method over a frozen backbone: its own parameters, how it rewrites an embedded batch, and what
    the search, the budget and the reports need to know about it.

    Subclasses implement `forward`, `param_groups`, `search_space` and `paper_param_count`; the rest has defaults.
    Every trainable tensor is a direct `nn.Parameter` of the method (ZeRO-3 re-gathers a module's own parameters
    around its forward), stored in float32 and cast to the batch dtype when applied.
    """

    method_name: ClassVar[str] = ""
    """Registry key, set by `@register`."""
    paper: ClassVar[str] = ""
    """Citation shown in the methods table."""
    inference_cost: ClassVar[str] = ""
    """What the method adds at inference, in words (methods table)."""
    parts: ClassVar[tuple[str, ...]] = ()
    """The method's own parts beyond its prompt (DePT's 'offsets', EPT's 'fusion'...), each removable by `zero_part`."""
    no_peft: ClassVar[str] = "it is not a prompt table prepended to the input"
    """Why the method has no PEFT equivalent, in one clause (methods that map onto PEFT override `peft_prompt`)."""
    shares_prompt: ClassVar[bool] = False
    """True when `forward` prepends one (n, d) tensor to every row: the backbone then runs the prompt once a batch."""

    def __init__(self, cfg: Any, info: BackboneInfo, embed_rows: EmbedRows | None, seed: int) -> None:
        """`cfg`: the method's config dataclass; `info`: the backbone; `embed_rows`: reads rows of its input
        embedding for inits (None when loading a saved prompt, whose weights overwrite the init); `seed`: init RNG."""
        super().__init__()
        self.cfg = cfg

    def forward(self, batch: PromptBatch) -> PromptBatch:
        """Rewrite the embedded batch: prepend the prompt (`prepend_prompt` pads masks with 1 and labels with
        -100), add offsets."""
        raise NotImplementedError

    def param_groups(self) -> list[dict]:
        """Optimizer groups over the method's own parameters, each {'params', 'lr', 'name', 'rms_power'}: lr in the
        config's units, and rms_power the power of the backbone's embedding RMS that converts it to an absolute lr
        (1: a tensor in embedding space; 0: a unit-free factor; pipeline.methods.units)."""
        raise NotImplementedError

    @staticmethod
    def search_space() -> dict[str, Dist]:
        """Default ASHA space keyed by `method.<field>` or `train.<field>`."""
        raise NotImplementedError

    @staticmethod
    def paper_param_count(cfg: Any, info: BackboneInfo) -> int:
        """The paper's formula for the trainable parameters (tests compare it with the module's count)."""
        raise NotImplementedError

    @staticmethod
    def num_virtual_tokens(cfg: Any) -> int:
        """Tokens the method adds to each input sequence."""
        return cfg.num_tokens

    @staticmethod
    def budget_overrides(tokens: int) -> dict | None:
        """Config values that put the method at PT's budget of `tokens` x d parameters (None: no such mode)."""
        return None

    def zero_part(self, part: str) -> None:
        """Remove own part `part` (one of `parts`) in place, so the method computes what it does without it: the
        ablation that asks whether the part carries accuracy."""
        raise ValueError(f"method {self.method_name!r} has no part {part!r}; expected one of {list(self.parts)}")

    def peft_prompt(self) -> Tensor:
        """The (n, d) table a PEFT PROMPT_TUNING adapter holds, for methods that are exactly PT."""
        raise ValueError(f"method {self.method_name!r} has no Hugging Face PEFT equivalent: {self.no_peft}")
