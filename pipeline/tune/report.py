"""The end-of-search table printed in the terminal."""

from __future__ import annotations

from pipeline.records import SearchSummary


def _own_params(params: dict, method: str) -> dict:
    """The hyperparameters a trial actually used: plain keys and its own method's namespaced keys."""
    out = {}
    for key, value in params.items():
        name, sep, rest = key.partition(":")
        if key != "method.name" and (not sep or name == method):
            out[rest if sep else key] = value
    return out


def summary_text(s: SearchSummary) -> str:
    """Trials (method, trainable params, best metric, steps used, wall time) and the trial-steps saved by pruning."""
    head = f"{'trial':<14}{'method':<8}{'status':<11}{'params':>9}{'best':>10}{'steps':>7}{'wall s':>8}"
    lines = [f"\nsearch {s.search_id}: {s.metric} ({s.mode})", head + "  hyperparameters"]
    for t in s.trials:
        best = "-" if t.best is None else f"{t.best:.4f}"
        n = "-" if t.trainable_params is None else str(t.trainable_params)
        err = f"  {t.error}" if t.error else ""
        lines.append(f"{t.trial_id:<14}{t.method:<8}{t.status:<11}{n:>9}{best:>10}{t.steps:>7}{t.wall_s:>8.1f}  "
                     f"{_own_params(t.params, t.method)}{err}")
    done = sum(t.steps for t in s.trials)
    full = len(s.trials) * max((t.steps for t in s.trials), default=0)
    lines.append(f"{len(s.trials)} trials ({sum(t.status == 'pruned' for t in s.trials)} pruned, "
                 f"{sum(t.status == 'failed' for t in s.trials)} failed); {done} trial-steps vs {full} without pruning")
    return "\n".join(lines)
