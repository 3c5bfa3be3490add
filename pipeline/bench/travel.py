"""The travel probe: how far each method's own parts move in a short run, in units of the embedding scale.

For every arm (a method section at candidate lrs) it trains `steps` steps with the trial's engine
(pipeline.bench.arms) and, every `probe_every` steps, rewrites a fixed batch of training rows twice: with the
method whole and with one own part zeroed (`PromptMethod.zero_part`). The part's contribution is
    RMS(full - without part) over every real position of the rewritten batch (prompt + tokens) / embedding RMS
(a part that acts on the ~25 input tokens of an SST-2 row beside a 60-token prompt reads about sqrt(85/25) = 1.8x
lower than its RMS where it acts)
and the prompt's travel is RMS(prepended prompt - its init) / embedding RMS. Adam moves a coordinate by about lr
a step, so a part whose direction holds travels in proportion to the steps: `x(300/steps)` extrapolates a probe
to a 300-step run with the same schedule (an upper estimate when the direction turns). A part that stays under a
percent of the scale is inert: the method is its short prompt.

    promptfarm bench-travel jobs/configs/study-travel-smollm2.yaml --out docs/results/travel
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import torch

from pipeline.bench.arms import Study, train, without
from pipeline.bench.study_config import StudyConfig, arm_config
from pipeline.data.encode import collate
from pipeline.methods.base import PromptBatch

RUN = 300
"""Steps of the run the probe extrapolates to (the methods table's)."""


def probe_batch(study: Study, rows: int) -> PromptBatch:
    """The first `rows` training rows, embedded by the frozen backbone: what every measurement rewrites."""
    b = collate(study.features[:rows], study.tokenizer.pad_token_id)
    with torch.no_grad():
        emb = study.model.get_input_embeddings()(b["input_ids"]).float()
    return PromptBatch(emb, b["attention_mask"], b.get("labels"))


def contributions(method, batch: PromptBatch, rms: float, start: torch.Tensor) -> dict[str, float]:
    """{part: its contribution, 'prompt': the prepended prompt's travel from `start`}, relative to `rms`; measured
    in eval mode (ADePT's dropout off), the method's mode restored after."""
    was = method.training
    method.eval()
    with torch.no_grad():
        full = method(batch)
        n = full.inputs_embeds.shape[1] - batch.inputs_embeds.shape[1]  # prepended positions
        real = full.attention_mask.bool()  # (B, n + L)
        out = {"prompt": float((full.inputs_embeds[0, :n] - start).pow(2).mean().sqrt()) / rms}
        for part in method.parts:
            gone = without(method, part)(batch).inputs_embeds
            out[part] = float((full.inputs_embeds - gone)[real].pow(2).mean().sqrt()) / rms
    method.train(was)
    return out


def run_probe(scfg: StudyConfig) -> list[dict]:
    """One record per arm: the configured lrs, the contributions at every probe step, the loss of the last steps."""
    first = arm_config(scfg, scfg.arms[0])
    study = Study.load(first)
    batch = probe_batch(study, scfg.probe_rows)
    records = []
    for arm in scfg.arms:
        cfg = arm_config(scfg, arm)
        start = study.build(cfg.method, cfg.seed)(batch).inputs_embeds[0].detach()
        n = start.shape[0] - batch.inputs_embeds.shape[1]
        curve: list[dict] = []

        def record(step: int, method, curve=curve, start=start[:n]) -> None:
            if step % scfg.probe_every == 0:
                curve.append({"step": step, **contributions(method, batch, study.rms, start)})

        trained = train(study, cfg, on_step=record)
        lrs = {k: v for k, v in arm.method.items() if k.startswith("lr")}
        tail = trained.losses[-scfg.probe_every:]
        records.append({"arm": arm.name, "method": cfg.method_name, "lrs": lrs, "curve": curve,
                        "loss_tail": statistics.fmean(tail), "step_s": statistics.median(trained.step_s)})
        print(f"[promptfarm] travel {arm.name}: {json.dumps(curve[-1])} loss {records[-1]['loss_tail']:.4f}",
              flush=True)
    return records


def markdown(records: list[dict], steps: int, rms: float | None = None) -> str:
    """The probe's table: per arm and part, the contribution after `steps` and extrapolated to a 300-step run."""
    lines = [f"| arm | lrs (embedding units) | part | after {steps} steps (% of RMS) | x{RUN / steps:g}: {RUN} "
             "steps (%) | train loss, last steps |", "|---|---|---|---|---|---|"]
    for r in records:
        last = r["curve"][-1]
        lrs = ", ".join(f"{k} {v:g}" for k, v in r["lrs"].items())
        for part, value in last.items():
            if part == "step":
                continue
            lines.append(f"| {r['arm']} | {lrs} | {part} | {100 * value:.2f} | {100 * value * RUN / steps:.1f} | "
                         f"{r['loss_tail']:.4f} |")
    return "\n".join(lines) + "\n"


def travel_command(scfg: StudyConfig, out: Path) -> str:
    """Run the probe, write travel.json and travel.md under `out`, return the table."""
    records = run_probe(scfg)
    steps = records[0]["curve"][-1]["step"]
    out.mkdir(parents=True, exist_ok=True)
    (out / "travel.json").write_text(json.dumps(records, indent=1))
    table = markdown(records, steps)
    (out / "travel.md").write_text(table)
    return table
