"""Per-trial fixed overhead of a search, warm (in-process trials) against a worker group per trial, in one run.

    promptfarm bench-trials jobs/configs/smoke.yaml --out docs/results/trials
    python -m jobs.bench_trials jobs/configs/sst2-smollm2.yaml train.max_steps=60 search.num_samples=3

The same search (the config's, trials one at a time) runs twice on one Ray cluster: first with
`train.in_process=false` (every trial starts a Ray Train worker group and loads the backbone), then with the
default (trials run in Tune's reused trial process, backbone kept). A Tune callback stamps each trial's start, every
result and its end; each result carries `compute_s`, the seconds since the trial's first step began. Per trial:

- start -> first step = first result's time - trial start - its compute_s (process, worker group, backbone, data);
- last report -> next start = the next trial's start - this trial's last result (teardown, scheduling);
- fixed overhead = the two summed; the ratio of the two modes' means is printed, first trial and later ones apart.
"""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path

from ray.tune import Callback

MODES = {"worker group": False, "in-process": True}
"""Label -> train.in_process."""


class TrialClock(Callback):
    """Appends one JSON line per trial event (start, result, end) with the driver's wall clock to `path`.

    A file, not attributes: Tune copies its callbacks when it saves the experiment state."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)

    def _write(self, **event) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps({"t": time.time(), **event}) + "\n")

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        self._write(event="start", trial=trial.trial_id)

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        self._write(event="result", trial=trial.trial_id, step=result.get("step"), compute_s=result.get("compute_s"),
                    eval_s=result.get("eval_s"))

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        self._write(event="end", trial=trial.trial_id)

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self._write(event="end", trial=trial.trial_id, error=True)


def overheads(events: list[dict]) -> list[dict]:
    """Per trial in start order: start_to_first_step_s, last_report_to_next_start_s (None for the last trial),
    fixed_s (their sum, or the first alone for the last trial), compute_s, wall_s."""
    starts = [e for e in events if e["event"] == "start"]
    out = []
    for i, start in enumerate(starts):
        mine = [e for e in events if e["trial"] == start["trial"]]
        results = [e for e in mine if e["event"] == "result" and e.get("compute_s") is not None]
        end = next((e for e in mine if e["event"] == "end"), None)
        if not results or end is None:
            continue
        first, last = results[0], results[-1]
        head = first["t"] - start["t"] - first["compute_s"]
        tail = starts[i + 1]["t"] - last["t"] if i + 1 < len(starts) else None
        out.append({"trial": start["trial"], "start_to_first_step_s": head, "last_report_to_next_start_s": tail,
                    "fixed_s": head + (tail or 0.0), "compute_s": last["compute_s"], "wall_s": end["t"] - start["t"]})
    return out


def _mean(xs: list[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def summary(rows: list[dict], wall_s: float) -> dict:
    """First trial's fixed overhead, the later trials' mean, mean compute, and the search's wall time."""
    later = rows[1:]
    return {"trials": len(rows), "search_wall_s": wall_s,
            "first_fixed_s": rows[0]["fixed_s"] if rows else None,
            "later_fixed_s": _mean([r["fixed_s"] for r in later]),
            "later_start_to_first_step_s": _mean([r["start_to_first_step_s"] for r in later]),
            "mean_compute_s": _mean([r["compute_s"] for r in rows])}


def run(cfg, out_dir: str | Path) -> dict:
    """Both modes of `cfg`'s search, one trial at a time, nothing registered; {mode: summary} + 'rows'."""
    from pipeline.tune.search import run_search

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    result: dict = {"rows": {}}
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for label, in_process in MODES.items():
        c = copy.deepcopy(cfg)
        c.train.in_process, c.search.max_concurrent_trials, c.tracking.register = in_process, 1, False
        clock = out_dir / f"events-{label.replace(' ', '-')}.jsonl"
        clock.unlink(missing_ok=True)
        began = time.time()
        run_search(c, search_id=f"{c.name}-trials-{label.replace(' ', '-')}-{stamp}", callbacks=[TrialClock(clock)])
        wall = time.time() - began
        rows = overheads([json.loads(line) for line in clock.read_text().splitlines()])
        result[label], result["rows"][label] = summary(rows, wall), rows
    return result


def to_markdown(result: dict, cfg) -> str:
    """The two modes side by side and the ratios (worker group / in-process)."""
    def fmt(v):
        return "-" if v is None else f"{v:.1f}"

    keys = [("search wall s", "search_wall_s"), ("first trial fixed overhead s", "first_fixed_s"),
            ("later trials fixed overhead s (mean)", "later_fixed_s"),
            ("later trials start -> first step s", "later_start_to_first_step_s"),
            ("compute per trial s (mean)", "mean_compute_s")]
    a, b = (result[label] for label in MODES)
    lines = [f"Trial overhead: {cfg.backbone.gguf or cfg.backbone.name_or_path}, {a['trials']} trials of "
             f"{cfg.train.max_steps} steps (eval every {cfg.train.eval_every}), one at a time", "",
             "| | worker group | in-process | ratio |", "|---|---|---|---|"]
    for name, k in keys:
        ratio = f"{a[k] / b[k]:.1f}x" if a[k] and b[k] else "-"
        lines.append(f"| {name} | {fmt(a[k])} | {fmt(b[k])} | {ratio} |")
    if b["later_fixed_s"] is not None and b["mean_compute_s"]:
        share = 100 * b["later_fixed_s"] / b["mean_compute_s"]
        lines.append(f"\nin-process fixed overhead of a later trial: {share:.1f}% of its compute")
    return "\n".join(lines) + "\n"


def write_outputs(result: dict, cfg, out_dir: str | Path) -> tuple[str, list[Path]]:
    """trials.md and trials.json of a finished `run` under `out_dir`; (the markdown, the files written)."""
    out_dir = Path(out_dir)
    text = to_markdown(result, cfg)
    files = [out_dir / "trials.md", out_dir / "trials.json"]
    files[0].write_text(text)
    files[1].write_text(json.dumps(result, indent=1))
    return text, files


def bench_trials_command(cfg, out_dir: str | Path) -> str:
    """`promptfarm bench-trials CONFIG --out DIR`: run both modes, write trials.md/.json; the text to print."""
    text, files = write_outputs(run(cfg, out_dir), cfg, out_dir)
    return text + f"wrote {files[0]}, {files[1]}"

