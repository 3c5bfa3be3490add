"""The paired ablation's tables (markdown) from its record (pipeline.bench.ablation): accuracy with a Wilson
interval, each own part zeroed, McNemar's test against every baseline arm, accuracy by input length, step cost."""

from __future__ import annotations

import statistics

from pipeline.bench.ablation import by_length, length_bins, mcnemar, run_ablation
from pipeline.data.metrics import wilson_interval


def _acc(correct: list[bool]) -> float:
    return 100 * sum(correct) / len(correct)


def _first(runs: dict) -> dict:
    """The record of the lowest seed an arm holds (the one every comparison pairs on)."""
    return runs[min(runs, key=int)]


def accuracy_table(state: dict, baselines: list[str]) -> str:
    """Per arm: accuracy of its first seed [95% interval], mean over seeds, zeroed parts, McNemar per baseline."""
    arms = state["arms"]
    head = ["arm", "accuracy % [95%]", "seeds: mean (each)", "own part zeroed"] + [f"vs {b}: wins/losses, p"
                                                                                   for b in baselines]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, runs in arms.items():
        rec = _first(runs)
        n = len(rec["correct"])
        acc = _acc(rec["correct"])
        lo, hi = wilson_interval(acc / 100, n)
        each = [_acc(r["correct"]) for _, r in sorted(runs.items(), key=lambda kv: int(kv[0]))]
        seeds = f"{statistics.fmean(each):.1f} ({', '.join(f'{a:.1f}' for a in each)})"
        zeroed = "; ".join(f"{p}: {_acc(c):.1f} ({_acc(c) - acc:+.1f}, p={mcnemar(rec['correct'], c)['p']:.2g})"
                           for p, c in rec.get("zeroed", {}).items()) or "-"
        cells = [name, f"{acc:.1f} [{100 * lo:.1f}, {100 * hi:.1f}]", seeds, zeroed]
        for b in baselines:
            if b == name or b not in arms:
                cells.append("-")
                continue
            t = mcnemar(rec["correct"], _first(arms[b])["correct"])
            cells.append(f"{t['a_only']}/{t['b_only']}, p={t['p']:.2g}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def length_table(state: dict) -> str:
    """Accuracy per input-length tertile (source tokens) of every arm's first seed."""
    lengths = state["lengths"]
    bins = length_bins(lengths)
    counts = [sum(lo <= n <= hi for n in lengths) for lo, hi in bins]
    head = ["arm"] + [f"{lo}-{hi} tokens ({c} rows)" for (lo, hi), c in zip(bins, counts, strict=True)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, runs in state["arms"].items():
        lines.append("| " + " | ".join([name] + [f"{a:.1f}" for a in by_length(_first(runs)["correct"], lengths,
                                                                             bins)]) + " |")
    return "\n".join(lines) + "\n"


def cost_table(state: dict) -> str:
    """Per trained arm: training step (optimizer included) and forward+backward with the prompt once per batch
    against once per row, and the peak memory of each."""
    head = ["arm", "train step s (median)", "fwd+bwd s, prompt once per batch", "once per row", "row / batch",
            "peak MiB per batch", "per row"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, cost in state.get("cost", {}).items():
        rec = _first(state["arms"][name])
        b, r = cost["batch"], cost["row"]
        lines.append(f"| {name} | {rec['train_step_s']:.2f} | {b['step_s']:.2f} | {r['step_s']:.2f} | "
                     f"{r['step_s'] / b['step_s']:.2f} | {b['peak_mib']:.0f} | {r['peak_mib']:.0f} |")
    return "\n".join(lines) + "\n"


def markdown(state: dict, baselines: list[str]) -> str:
    """All three tables, each under its heading."""
    return ("## Accuracy, paired\n\n" + accuracy_table(state, baselines) + "\n## By input length\n\n"
            + length_table(state) + "\n## Cost\n\n" + cost_table(state))


def ablation_command(scfg, out) -> str:
    """Run (or finish) the ablation of `scfg` under `out`, write ablation.md beside ablation.json, return it."""
    state = run_ablation(scfg, out)
    text = markdown(state, scfg.baselines)
    (out / "ablation.md").write_text(text)
    return text
