"""The paired ablation: every arm trained the same way and scored on the same report rows, so arms are compared
row by row (McNemar's test), each method's own part zeroed after training (does it carry accuracy?), accuracy by
input length, and what a step costs with the prompt run once per batch against once per row.

    promptfarm bench-ablation jobs/configs/study-ablation-smollm2.yaml --out docs/results/ablation

Results are written after every arm (ablation.json); a run started again with the same --out skips the arms
(and seeds) it already holds, so a killed run loses at most the arm in flight, and measures the step costs again.
"""

from __future__ import annotations

import json
import math
import statistics
import time
from pathlib import Path

import torch

from pipeline.bench.arms import Study, correct_rows, source_lengths, train, without
from pipeline.bench.measure import MemoryProbe
from pipeline.bench.study_config import StudyConfig, arm_config
from pipeline.data.encode import collate
from pipeline.data.sources import load_examples
from pipeline.model.prompted import NoPrompt, PromptedModel

FROZEN = "frozen"


def mcnemar(a: list[bool], b: list[bool]) -> dict:
    """Exact two-sided McNemar test of two classifiers scored on the same rows: the discordant pairs (a right and b
    wrong, and the reverse) under H0 are Binomial(n01 + n10, 1/2)."""
    n01 = sum(x and not y for x, y in zip(a, b, strict=True))
    n10 = sum(y and not x for x, y in zip(a, b, strict=True))
    n, k = n01 + n10, min(n01, n10)
    p = min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n) if n else 1.0
    return {"a_only": n01, "b_only": n10, "p": p}


def length_bins(lengths: list[int], bins: int = 3) -> list[tuple[int, int]]:
    """[lo, hi] token ranges that split the report rows into `bins` groups of about equal size (tertiles)."""
    s = sorted(lengths)
    edges = [s[0]] + [s[min(len(s) - 1, (len(s) * i) // bins)] for i in range(1, bins)] + [s[-1] + 1]
    return [(edges[i], edges[i + 1] - 1) for i in range(bins)]


def by_length(correct: list[bool], lengths: list[int], bins: list[tuple[int, int]]) -> list[float]:
    """Accuracy (%) within each length range."""
    out = []
    for lo, hi in bins:
        hits = [c for c, n in zip(correct, lengths, strict=True) if lo <= n <= hi]
        out.append(100 * sum(hits) / len(hits) if hits else float("nan"))
    return out


def step_cost(study: Study, method, batch_size: int, steps: int, shared: bool) -> dict:
    """Median seconds of a forward + backward over one training batch, and the peak memory above the start (MiB),
    with the prompt run once per batch (`shared`) or once per row (the papers' setting)."""
    feats = collate(study.features[:batch_size], study.tokenizer.pad_token_id)
    model = PromptedModel(study.model, method, study.info.is_seq2seq).train()
    method.shares_prompt = shared  # an instance value over the class's declaration, for this measurement only
    probe = MemoryProbe(torch.device("cpu"))
    start = probe.current()
    probe.reset_peak()
    times = []
    for _ in range(steps + 1):  # the first is a warm-up
        t0 = time.perf_counter()
        model(**feats).loss.backward()
        times.append(time.perf_counter() - t0)
    method.zero_grad(set_to_none=True)
    del method.shares_prompt
    return {"step_s": statistics.median(times[1:]), "peak_mib": (probe.peak() - start) / 2 ** 20}


def _load(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {"arms": {}}


def run_ablation(scfg: StudyConfig, out: Path) -> dict:
    """Train and score every arm for every seed (skipping those already in out/ablation.json), then the frozen
    backbone; returns the whole record."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / "ablation.json"
    state = _load(path)
    study = Study.load(arm_config(scfg, scfg.arms[0]))
    rows = load_examples(study.task, "validation", scfg.report_file, scfg.report_limit, seed=0)
    state["lengths"] = source_lengths(study, rows)
    bs = study.cfg.train.eval_batch_size
    if FROZEN not in state["arms"]:
        state["arms"][FROZEN] = {"0": {"correct": correct_rows(study, NoPrompt(), rows, bs)}}
        path.write_text(json.dumps(state))
    for seed in scfg.seeds:
        for arm in scfg.arms:
            done = state["arms"].setdefault(arm.name, {})
            if str(seed) in done:
                continue
            cfg = arm_config(scfg, arm)
            t0 = time.perf_counter()
            trained = train(study, cfg, seed=seed)
            rec = {"method": arm.method, "train_s": time.perf_counter() - t0,
                   "train_step_s": statistics.median(trained.step_s),
                   "correct": correct_rows(study, trained.method, rows, bs),
                   "zeroed": {p: correct_rows(study, without(trained.method, p), rows, bs) for p in arm.zero}}
            done[str(seed)] = rec
            path.write_text(json.dumps(state))  # after every arm: a killed run resumes from here
            acc = 100 * sum(rec["correct"]) / len(rows)
            print(f"[promptfarm] ablation {arm.name} seed {seed}: {acc:.1f}% on {len(rows)} rows, "
                  f"{rec['train_s']:.0f} s", flush=True)
    # A step costs the same at any parameter values, so the cost is measured on fresh methods, on every call (a run
    # started again re-measures it alone, in a quiet moment, without training anything)
    state["cost"] = {}
    for arm in scfg.arms:
        cfg = arm_config(scfg, arm)
        method = study.build(cfg.method, scfg.seeds[0])
        state["cost"][arm.name] = {mode: step_cost(study, method, cfg.train.batch_size, scfg.timing_steps,
                                                   mode == "batch") for mode in ("batch", "row")}
    path.write_text(json.dumps(state))
    return state
