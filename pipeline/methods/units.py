"""Learning rates in embedding units: one rule that turns a method's configured lrs into absolute ones.

Adam moves every coordinate of a parameter by about `lr` per step whatever its gradient's scale, so an lr only
means the same thing on two backbones when it is measured in the parameter's own units. The papers' lrs were
tuned on T5 (input-embedding RMS about 10); SmolLM2-135M's is 0.136, so the same absolute lr moves a prompt about
70x faster relative to the tokens it sits beside.

Each optimizer group a method returns declares `rms_power` p: how the tensor's natural scale follows the
backbone's embedding RMS. If every embedding is multiplied by c, the method computes the same function of the
(scaled) input exactly when its tensors of power p are multiplied by c^p:
    p = 1   a tensor that lives in embedding space: prompts, DePT's B (offsets = A B), FFN biases b1, b2
    p = 0   a map between spaces whose output already carries the input's scale: DePT's A, ADePT's W1, W2
    p = -1  a map that reads embeddings into a scale-free quantity (softmax logits): EPT's gate
So with `train.lr_units: embedding` (the default), a configured lr is written for REFERENCE_RMS and a group's
absolute lr is  lr * (rms / REFERENCE_RMS) ** p,  computed where the backbone is loaded (the trial worker, the
bench, the peer check), from the embedding it actually holds. `absolute` uses the configured values as written.
"""

from __future__ import annotations

import math

import torch

REFERENCE_RMS = 10.0
"""Embedding RMS the methods' default learning rates are written for (the papers' T5 runs). CHOICE, measured: on
SmolLM2-135M (RMS 0.136) PT-100 reached 81.3% SST-2 dev accuracy (128 rows) after 50 steps at lr 0.003 and 77.3%
at lr 0.04; 10 maps the papers' 0.3 to 0.004 there, i.e. Adam moves a prompt coordinate by ~3% of the RMS a step."""

def embedding_rms(weight: torch.Tensor) -> float:
    """RMS of an input-embedding matrix's entries (float64 accumulation: 28M entries for SmolLM2)."""
    return float(weight.detach().double().pow(2).mean().sqrt())


def lr_factor(rms: float, power: int, units: str) -> float:
    """Multiplier of a configured lr for a tensor of `rms_power` power over a backbone of embedding RMS `rms`."""
    if units == "absolute" or power == 0:
        return 1.0
    if not (math.isfinite(rms) and rms > 0):
        raise ValueError(f"backbone embedding RMS is {rms!r}; expected a positive finite value to scale lrs by")
    return (rms / REFERENCE_RMS) ** power


def absolute_groups(groups: list[dict], rms: float, units: str) -> list[dict]:
    """The method's optimizer groups with absolute lrs (see module docstring); each keeps its 'name' and gains
    'configured_lr' (the value as written) and 'embedding_rms' (the scale it was converted with) for logging."""
    out = []
    for g in groups:
        power = g.get("rms_power", 0)
        out.append({**g, "configured_lr": g["lr"], "lr": g["lr"] * lr_factor(rms, power, units), "embedding_rms": rms})
    return out
