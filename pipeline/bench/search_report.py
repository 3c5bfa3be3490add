"""search.md from bench-search's record: the two summary lines, the PT searches side by side, ASHA against the grid,
where each side's time went, and the grace-period rule read off the grid's curves."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np

from pipeline.bench.ablation import mcnemar
from pipeline.data.metrics import spearman, wilson_interval

SPLIT = ("start_s", "load_s", "steps_s", "eval_s", "gap_s")
RHO_MIN = 0.8
"""CHOICE: a rung may cut once the validation loss there ranks trials as their best losses do (Spearman >= 0.8)."""


def ratios(result: dict) -> dict:
    """Wall time ours/peer and ASHA's share of the grid's trial-steps, from the recorded figures (None if absent)."""
    out = {"wall_ours_over_peer": None, "asha_share_of_grid": None}
    if "ours" in result and "peer" in result:
        out["wall_ours_over_peer"] = result["ours"]["wall_s"] / result["peer"]["wall_s"]
    m = result.get("methods")
    if m:
        out["asha_share_of_grid"] = m["asha"]["trial_steps"] / m["fifo"]["trial_steps"]
    return out


def accuracy(correct: list[bool]) -> tuple[float, list[float]]:
    """Accuracy and its 95% Wilson interval."""
    acc = sum(correct) / len(correct)
    return acc, wilson_interval(acc, len(correct))


def paired_difference(a: list[bool], b: list[bool]) -> tuple[float, float, float]:
    """Mean of a_i - b_i over the same rows in points and its normal 95% interval (lo, hi)."""
    d = np.array(a, dtype=float) - np.array(b, dtype=float)
    half = 1.96 * d.std(ddof=1) / math.sqrt(len(d)) if len(d) > 1 else float("nan")
    return 100 * d.mean(), 100 * (d.mean() - half), 100 * (d.mean() + half)


def same_configurations(asha: dict, grid: dict) -> bool:
    """Whether both searches sampled the same configurations (as multisets of their params)."""
    def key(rec):
        return sorted(json.dumps(t["params"], sort_keys=True, default=str) for t in rec["trials"])
    return key(asha) == key(grid)


def curve_rule(grid: dict, reduction_factor: float) -> list[dict]:
    """Per report r of the grid's trials: Spearman(loss at r, best loss), and whether ASHA's cut at r (the top
    1/reduction_factor of all trials) keeps the grid's best trial and each method's best trial."""
    trials = [t for t in grid["trials"] if t["history"]]
    best = {t["trial"]: min(v for _, v in t["history"]) for t in trials}
    top = min(best, key=best.get)
    per_method = {}
    for t in trials:
        if t["method"] not in per_method or best[t["trial"]] < best[per_method[t["method"]]]:
            per_method[t["method"]] = t["trial"]
    rows = []
    for r in range(1, min(len(t["history"]) for t in trials) + 1):
        at = {t["trial"]: t["history"][r - 1][1] for t in trials}
        keep = sorted(at, key=at.get)[:max(1, math.ceil(len(at) / reduction_factor))]
        rho = spearman(np.array([at[k] for k in best]), np.array(list(best.values()))) if len(best) > 2 else 1.0
        rows.append({"report": r, "step": trials[0]["history"][r - 1][0], "spearman": rho, "keeps_best": top in keep,
                     "methods_kept": sum(v in keep for v in per_method.values()), "methods": len(per_method)})
    return rows


def grace_from(rule: list[dict]) -> int | None:
    """The first report from which on every rung ranks like the end (Spearman >= RHO_MIN) and keeps the best."""
    ok = [r["spearman"] >= RHO_MIN and r["keeps_best"] for r in rule]
    for i in range(len(ok)):
        if all(ok[i:]):
            return rule[i]["report"]
    return None


def _f(v, spec=".1f") -> str:
    return "-" if v is None else format(v, spec)


def _acc_cell(correct: list[bool]) -> str:
    acc, (lo, hi) = accuracy(correct)
    return f"{100 * acc:.1f} [{100 * lo:.1f}, {100 * hi:.1f}]"


def _split_rows(label: str, split: list[dict]) -> str:
    totals = [sum(r[k] for r in split if r[k] is not None) if any(r[k] is not None for r in split) else None
              for k in SPLIT]
    return f"| {label} | {len(split)} | " + " | ".join(_f(v) for v in totals) + " |"


def to_markdown(result: dict, title: str, reduction_factor: float) -> str:
    """The page: two script-readable summary lines first, then the parts present in `result`."""
    r = ratios(result)
    share = r["asha_share_of_grid"]
    lines = [f"wall time ours/peer: {_f(r['wall_ours_over_peer'], '.2f')}x",
             f"ASHA trial-steps: {'-' if share is None else f'{100 * share:.0f}'}% of the grid", "",
             f"# Search benchmark: {title}", "",
             f"Machine: {os.cpu_count()} CPU cores, no GPU; parts run one after another, one trial at a time. "
             f"Champions scored by promptfarm's evaluator on {result['report_rows']} report rows (95% Wilson "
             f"intervals). Learning rates (embedding units): {', '.join(f'{v:g}' for v in result['lrs'])}.", ""]
    peer, ours = result.get("peer"), result.get("ours")
    if peer and ours:
        d, lo, hi = paired_difference(ours["correct"], peer["correct"])
        mc = mcnemar(ours["correct"], peer["correct"])
        lines += ["## PT search: HF Trainer + PEFT against promptfarm", "",
                  "| | peer | promptfarm |", "|---|---:|---:|",
                  f"| wall s to champion | {peer['wall_s']:.1f} | {ours['wall_s']:.1f} |",
                  f"| trials / trial-steps | {len(peer['trials'])} / {peer['trial_steps']} | "
                  f"{len(ours['trials'])} / {ours['trial_steps']} |",
                  f"| champion absolute lr | {peer['best']['lr']:.3g} | "
                  f"{_abs(result, ours['trials'], ours['best']['trial']):.3g} |",
                  f"| champion selection loss | {peer['best']['objective']:.4f} | {ours['best']['value']:.4f} |",
                  f"| champion accuracy % | {_acc_cell(peer['correct'])} | {_acc_cell(ours['correct'])} |", "",
                  f"accuracy ours - peer: {d:+.1f} points [{lo:+.1f}, {hi:+.1f}] (paired), McNemar p {mc['p']:.3f}",
                  "", "| lr (embedding) | absolute | peer steps | promptfarm steps |", "|---:|---:|---:|---:|"]
        ours_by_lr = {round(t["lr"], 12): t for t in ours["trials"]}
        peer_by_lr = {round(t["lr"], 12): t for t in peer["trials"]}
        for lr, a in zip(result["lrs"], result["abs_lrs"], strict=True):
            p, o = peer_by_lr.get(round(a, 12), {}), ours_by_lr.get(round(lr, 12), {})
            lines.append(f"| {lr:g} | {a:.3g} | {p.get('steps', '-')} | {o.get('steps', '-')} |")
        lines += ["", "Where the time went (seconds summed over trials):", "",
                  "| side | trials | start | load | steps | eval | gap to next |",
                  "|---|---:|---:|---:|---:|---:|---:|",
                  _split_rows("peer", peer["split"]), _split_rows("promptfarm", ours["split"]), ""]
    m = result.get("methods")
    if m:
        a, g = m["asha"], m["fifo"]
        acc_a, acc_g = accuracy(a["correct"])[0], accuracy(g["correct"])
        regret = 100 * (acc_g[0] - acc_a)
        inside = acc_g[1][0] <= acc_a <= acc_g[1][1]
        lines += ["## ASHA against the grid (the same configurations, every trial to its last step)", "",
                  f"{len(g['trials'])} configurations of {', '.join(sorted({t['method'] for t in g['trials']}))}, "
                  f"{max(t['steps'] for t in g['trials'])} steps each in the grid.", "",
                  "| | ASHA | grid |", "|---|---:|---:|",
                  f"| scheduler | {a['scheduler']} | {g['scheduler']} |",
                  f"| wall s | {a['wall_s']:.1f} | {g['wall_s']:.1f} |",
                  f"| trials / trial-steps | {len(a['trials'])} / {a['trial_steps']} | "
                  f"{len(g['trials'])} / {g['trial_steps']} |",
                  f"| champion | {_champ(a)} | {_champ(g)} |",
                  f"| champion accuracy % | {_acc_cell(a['correct'])} | {_acc_cell(g['correct'])} |", "",
                  f"same configurations: {'yes' if same_configurations(a, g) else 'NO'}; regret {regret:+.1f} points; "
                  f"ASHA's champion {'inside' if inside else 'outside'} the grid best's interval", ""]
        rule = curve_rule(g, reduction_factor)
        grace = grace_from(rule)
        lines += ["Grid curves: does a rung at report r rank trials as they end?", "",
                  "| report | step | Spearman(loss_r, best) | cut keeps the best | methods' bests kept |",
                  "|---:|---:|---:|---|---:|"]
        lines += [f"| {x['report']} | {x['step']} | {x['spearman']:.2f} | {'yes' if x['keeps_best'] else 'no'} | "
                  f"{x['methods_kept']}/{x['methods']} |" for x in rule]
        lines += ["", f"rule: the first rung at the first report from which every report ranks like the end "
                  f"(Spearman >= {RHO_MIN}) and keeps the best trial: grace_period = {_f(grace, 'd')}", ""]
    return "\n".join(lines)


def _abs(result: dict, trials: list[dict], trial: str) -> float:
    lr = next(t["lr"] for t in trials if t["trial"] == trial)
    return result["abs_lrs"][result["lrs"].index(lr)]


def _champ(rec: dict) -> str:
    t = next(t for t in rec["trials"] if t["trial"] == rec["best"]["trial"])
    own = {k.rpartition(":")[2]: v for k, v in t["params"].items() if ":" not in k or k.startswith(f"{t['method']}:")}
    shown = {k: (f"{v:.3g}" if isinstance(v, float) else v) for k, v in own.items()}
    return f"{t['method']} " + ", ".join(f"{k}={v}" for k, v in shown.items() if k != "method.name")


def write(result: dict, out_dir: str | Path, title: str, reduction_factor: float) -> tuple[str, Path]:
    """search.md beside search.json; (the markdown, its path)."""
    text = to_markdown(result, title, reduction_factor)
    path = Path(out_dir) / "search.md"
    path.write_text(text)
    return text, path
