"""Benchmark results: rows with their ratios, the targets as measured, and the markdown / JSON renderings."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Literal

Kind = Literal["backbone", "method", "peft"]


@dataclass
class Row:
    """One benchmarked configuration and its measurements (times are medians over the timed steps)."""

    name: str
    """'backbone-<total length>', a registered method's name, or 'peft-pt'."""
    kind: Kind
    """'backbone' (frozen model alone), 'method' (registered method) or 'peft' (HF PEFT PromptTuning)."""
    input_len: int
    """Real tokens per sequence fed to the row."""
    virtual_tokens: int
    """Tokens the row's prompt adds to every sequence."""
    trainable_params: int
    """Elements over parameters that require grad."""
    step_ms: float
    """Median training step (forward + backward + optimizer step), ms."""
    infer_ms: float
    """Median inference forward (torch.inference_mode) of one batch, ms."""
    tokens_per_s: float
    """batch_size x input_len / step: real input tokens trained on per second (virtual tokens excluded)."""
    peak_mib: float
    """Memory after loading the backbone plus the row's own peak above it (see pipeline.bench.measure), MiB."""
    own_mib: float
    """The row's own peak above its start: parameters, optimizer state, activations, gradients, MiB."""
    step_samples_ms: list[float] = field(default_factory=list)
    """Every timed training step, ms."""
    infer_samples_ms: list[float] = field(default_factory=list)
    """Every timed inference forward, ms."""
    vs_backbone: float | None = None
    """step / step of the backbone alone at the input length (the limit every method sits on)."""
    vs_same_len: float | None = None
    """step / step of the backbone alone at this row's total length (input + virtual tokens)."""
    overhead_pct: float | None = None
    """The row's own overhead: (step - backbone step at the same total length) / step, in %."""
    vs_peft: float | None = None
    """step / step of HF PEFT's PromptTuning at the reference's prompt length."""
    quant: str = "none"
    """Quantisation of the backbone the row ran over ('none' = backbone.dtype); ratios compare within one."""

    @property
    def total_len(self) -> int:
        return self.input_len + self.virtual_tokens


@dataclass
class Target:
    """One target of the issue, evaluated on the measured numbers (never asserted)."""

    name: str
    """What is compared, e.g. 'dept own overhead < 3%'."""
    measured: str
    """The measured figures behind the verdict."""
    passed: bool | None
    """True/False as measured; None when a row it needs was not benchmarked."""


def add_ratios(rows: list[Row]) -> None:
    """Fill each row's ratio fields from the rows' medians (backbone rows are keyed by their quantisation and total
    length: a row is compared with the backbone it ran over)."""
    backbones = {(r.quant, r.total_len): r for r in rows if r.kind == "backbone"}
    limits = {}
    for (quant, _), r in sorted(backbones.items(), key=lambda kv: -kv[1].total_len):
        limits[quant] = r  # the shortest backbone row of each quantisation
    peft = next((r for r in rows if r.kind == "peft"), None)
    for r in rows:
        same, limit = backbones.get((r.quant, r.total_len)), limits.get(r.quant)
        r.vs_backbone = r.step_ms / limit.step_ms if limit else None
        r.vs_same_len = r.step_ms / same.step_ms if same else None
        r.overhead_pct = 100.0 * (r.step_ms - same.step_ms) / r.step_ms if same and r.kind != "backbone" else None
        r.vs_peft = r.step_ms / peft.step_ms if peft else None


def targets(rows: list[Row], reference: str, overhead_pct: float) -> list[Target]:
    """The issue's three targets: own overhead, reference vs PEFT, shorter prompts faster than the reference."""
    out = []
    for r in rows:
        if r.kind == "method":
            ok = None if r.overhead_pct is None else r.overhead_pct < overhead_pct
            out.append(Target(f"{r.name} own overhead < {overhead_pct:g}% of its step",
                              f"{_f(r.overhead_pct, '.1f')}% ({r.step_ms:.2f} ms vs backbone-{r.total_len})", ok))
    ref = next((r for r in rows if r.kind == "method" and r.name == reference), None)
    peft = next((r for r in rows if r.kind == "peft"), None)
    out.append(Target(f"{reference} at least as fast as PEFT PromptTuning",
                      f"{_f(ref and ref.step_ms)} ms vs {_f(peft and peft.step_ms)} ms",
                      None if ref is None or peft is None else ref.step_ms <= peft.step_ms))
    for r in rows:
        if ref is not None and r.kind == "method" and r.quant == "none" and r.virtual_tokens < ref.virtual_tokens:
            out.append(Target(f"{r.name} ({r.virtual_tokens} tokens) faster per step than {reference} "
                              f"({ref.virtual_tokens} tokens)", f"{r.step_ms:.2f} ms vs {ref.step_ms:.2f} ms",
                              r.step_ms < ref.step_ms))
    return out


def quant_targets(rows: list[Row], weights_mib: dict[str, float], reference: str) -> list[Target]:
    """Per quantisation: its weights against the full-precision backbone's (target <= 0.3x) and the reference
    method's step time over it against full precision (reported, no target: de-quantising costs time on CPU)."""
    out, full = [], weights_mib.get("none")
    steps = {r.quant: r.step_ms for r in rows if r.kind == "method" and r.name.split("@")[0] == reference}
    for quant, mib in weights_mib.items():
        if quant == "none" or not full:
            continue
        out.append(Target(f"{quant} backbone weights at most 0.3x of full precision",
                          f"{mib / full:.3f}x ({mib:.1f} vs {full:.1f} MiB)", mib / full <= 0.3))
        if quant in steps and "none" in steps:
            out.append(Target(f"{reference} step over {quant} vs full precision (ratio reported)",
                              f"{steps[quant] / steps['none']:.3f}x ({steps[quant]:.2f} vs {steps['none']:.2f} ms)",
                              None))
    return out


def _f(x: float | None, fmt: str = ".2f") -> str:
    return "n/a" if x is None else format(x, fmt)


@dataclass
class BenchResult:
    """Everything one benchmark run produced."""

    config: dict[str, Any]
    """The BenchConfig as a plain dict."""
    env: dict[str, Any]
    """Device, dtype, torch version, threads and the memory measure used."""
    rows: list[Row]
    """Backbone-only rows, method rows, PEFT row, in that order."""
    targets: list[Target]
    """The targets as measured."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> BenchResult:
        return cls(raw["config"], raw["env"], [Row(**r) for r in raw["rows"]], [Target(**t) for t in raw["targets"]])

    def markdown(self) -> str:
        """The table (one line per row, ratios included), the targets as measured, and how it was measured."""
        head = ["row", "tokens (input+virtual)", "trainable params", "step ms", "tokens/s", "infer ms",
                "peak MiB", "own MiB", "x backbone", "x same length", "own overhead", "x PEFT PT"]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for r in self.rows:
            cells = [r.name, f"{r.input_len}+{r.virtual_tokens}={r.total_len}", f"{r.trainable_params:,}",
                     f"{r.step_ms:.2f}", f"{r.tokens_per_s:,.0f}", f"{r.infer_ms:.2f}", f"{r.peak_mib:.1f}",
                     f"{r.own_mib:.1f}", _f(r.vs_backbone, ".3f"), _f(r.vs_same_len, ".3f"),
                     "-" if r.overhead_pct is None else f"{r.overhead_pct:+.1f}%", _f(r.vs_peft, ".3f")]
            lines.append("| " + " | ".join(cells) + " |")
        lines += ["", "Targets (measured, not asserted):", ""]
        verdict = {True: "pass", False: "FAIL", None: "n/a"}
        lines += [f"- {verdict[t.passed]}: {t.name}: {t.measured}" for t in self.targets]
        e, c = self.env, self.config
        lines += ["", f"{e['backbone']} ({e['dtype']}) on {e['device']}, batch {c['batch_size']}, input length "
                      f"{c['seq_len']}, median of {c['steps']} steps after {c['warmup']} warm-up steps, rows timed "
                      f"round-robin; torch {e['torch']}, {e['threads']} threads. Memory: {e['memory']}."]
        if e.get("memory_note"):
            lines.append(f"Note: {e['memory_note']}.")
        if len(e.get("weights_mib", {})) > 1:
            lines.append("Backbone weights (parameters + buffers): " + ", ".join(
                f"{q} {mib:.1f} MiB (+{e['load_mib'][q]:.1f} MiB process memory at load)"
                for q, mib in e["weights_mib"].items()) + "; rows NAME@Q run over the backbone quantised Q.")
        return "\n".join(lines) + "\n"
