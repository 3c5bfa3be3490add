"""`promptfarm bench-search`: whole searches on one machine and data, one after another, scored on the same rows.

    promptfarm bench-search jobs/configs/bench-search-tiny.yaml --out /tmp/bench-search     # tiny LLaMA, minutes
    nohup promptfarm bench-search jobs/configs/bench-search-smollm2.yaml --out docs/results/search &

Parts (each written to search.json when it ends; a run started again in the same directory skips the parts there):
1. peer: HF `Trainer.hyperparameter_search(backend="ray")` + PEFT PromptTuning (pipeline.bench.peer_search);
2. ours: promptfarm's ASHA search of PT over the same sampled lrs, to a registered champion;
3. methods: promptfarm's ASHA search of the experiment's methods against the same configurations under
   `search.scheduler=fifo` (every trial to its last step: the grid).
Every champion is scored by promptfarm's evaluator on every report row with one backbone loaded in this process.
Per trial the time is split into start (trial start to the first step: process, imports, model), steps, evaluation
and the gap to the next trial's start, from Tune callback stamps (TrialClock) and, on the peer, a TrainerCallback.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from pipeline.bench.search_config import SearchBenchConfig, experiment, sampled_lrs

RESULT = "search.json"


def _pinned(exp, out_dir: Path, tag: str):
    """`exp` writing under `out_dir`: Ray results in ray-<tag>/, MLflow in one sqlite store for the whole bench."""
    exp.storage_path = str((out_dir / f"ray-{tag}").resolve())
    exp.tracking.tracking_uri = f"sqlite:///{(out_dir / 'mlflow.db').resolve()}"
    exp.search.max_concurrent_trials = 1  # both sides run one trial at a time on the same cores
    return exp


def _events(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _starts_and_next(events: list[dict]) -> tuple[dict, dict]:
    """{trial: start time} and {trial: the next trial's start time} from TrialClock events."""
    starts = [e for e in events if e["event"] == "start"]
    nxt = {s["trial"]: starts[i + 1]["t"] for i, s in enumerate(starts[:-1])}
    return {s["trial"]: s["t"] for s in starts}, nxt


def our_split(events: list[dict]) -> list[dict]:
    """Per trial of a promptfarm search: start_s (to the first step: process, backbone when cold, data), steps_s,
    eval_s, gap_s (its last report to the next trial's start), from TrialClock events with compute_s/eval_s."""
    start, nxt = _starts_and_next(events)
    out = []
    for trial, t0 in start.items():
        res = [e for e in events if e["trial"] == trial and e["event"] == "result" and e.get("compute_s") is not None]
        if not res:
            continue
        ev = sum(e.get("eval_s") or 0.0 for e in res)
        out.append({"trial": trial, "start_s": res[0]["t"] - t0 - res[0]["compute_s"], "load_s": None,
                    "steps_s": res[-1]["compute_s"] - ev, "eval_s": ev,
                    "gap_s": nxt[trial] - res[-1]["t"] if trial in nxt else None})
    return out


def peer_split(events: list[dict], stamps: list[dict]) -> list[dict]:
    """The same split for peer trials: TrialClock `events` for starts, PeerClock `stamps` inside the trial: start_s
    (to model_init, then from its end to the first step: process, imports, Trainer set-up), load_s (model_init:
    backbone + PEFT wrap), steps, evaluation + checkpoint save, gap to the next start."""
    start, nxt = _starts_and_next(events)
    out = []
    for trial, t0 in start.items():
        mine = [e for e in stamps if e["trial"] == trial]
        at = {(e["event"], e["step"]): e["t"] for e in mine}
        first = {e["event"]: e["t"] for e in reversed(mine)}
        if "init_end" not in first or "train_begin" not in first:
            continue
        # an evaluation runs from its step's end to its save, or to its own stamp in a trial ASHA stopped at its
        # report (Tune ends the trial inside the evaluation's report: no save follows)
        ev = sum(at.get(("save", s), t) - at[("step", s)] for (kind, s), t in at.items()
                 if kind == "evaluate" and ("step", s) in at)
        last = max(e["t"] for e in mine)
        setup = first["train_begin"] - first["init_end"]
        out.append({"trial": trial, "start_s": first["init_begin"] - t0 + setup, "load_s": first["init_end"] -
                    first["init_begin"], "steps_s": last - first["train_begin"] - ev, "eval_s": ev,
                    "gap_s": nxt[trial] - last if trial in nxt else None})
    return out


def _trials(summary, lr_key: str = "method.lr") -> list[dict]:
    return [{"trial": t.trial_id, "method": t.method, "params": t.params, "lr": t.params.get(lr_key),
             "steps": t.steps, "reports": t.reports, "status": t.status, "history": t.history}
            for t in summary.trials]


def _our_search(exp, out_dir: Path, tag: str, register: bool) -> tuple[dict, object]:
    """Run one promptfarm search with a TrialClock; (its record, the SearchSummary)."""
    from pipeline.bench.trials import TrialClock
    from pipeline.tune.search import run_search

    clock = out_dir / f"events-{tag}.jsonl"
    clock.unlink(missing_ok=True)
    began = time.time()
    summary = run_search(exp, register=register, search_id=f"{exp.name}-{tag}-{time.strftime('%Y%m%d-%H%M%S')}",
                         callbacks=[TrialClock(clock)])
    wall = time.time() - began
    rec = {"wall_s": wall, "scheduler": exp.search.scheduler, "trials": _trials(summary),
           "trial_steps": sum(t.steps for t in summary.trials), "split": our_split(_events(clock)),
           "best": {"trial": summary.best_trial, "value": summary.best_value, "checkpoint": summary.best_checkpoint},
           "registered": bool(summary.registration)}
    return rec, summary


def run(cfg: SearchBenchConfig, out_dir: str | Path) -> dict:
    """Run the configured parts not yet in `out_dir`/search.json; the whole record (parts + shared facts)."""
    from pipeline.artifact import load_prompt
    from pipeline.bench.arms import Study, correct_rows
    from pipeline.bench.peer_search import run_peer
    from pipeline.data.encode import Encoder, Encoding
    from pipeline.data.sources import load_examples
    from pipeline.methods.pt import PTConfig
    from pipeline.methods.units import lr_factor
    from pipeline.model.backbone import input_embedding_rms, load_backbone
    from pipeline.train.loop import encoded_data
    from pipeline.tune.cluster import ensure_ray, resolve_paths

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / RESULT
    result = json.loads(path.read_text()) if path.exists() else {}
    pt_exp = resolve_paths(_pinned(experiment(cfg, "ours"), out_dir, "ours"))
    model, tok, info = load_backbone(pt_exp.backbone)  # scoring and encoding only; trials load their own
    enc = Encoder(tok, info.is_seq2seq, Encoding.of(pt_exp.data))
    task, features, val_ex = encoded_data(pt_exp.data, enc, pt_exp.seed)
    study = Study(pt_exp, model, tok, info, task, enc, features, input_embedding_rms(model))
    rows = load_examples(task, "validation", cfg.report_file or pt_exp.data.validation_file, cfg.report_limit,
                         seed=None)
    lrs = sampled_lrs(cfg)
    abs_lrs = [lr * lr_factor(study.rms, 1, pt_exp.train.lr_units) for lr in lrs]
    result.update(lrs=lrs, abs_lrs=abs_lrs, report_rows=len(rows), embedding_rms=study.rms)

    def save() -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(result, indent=1))
        tmp.replace(path)  # a run killed mid-write leaves the previous parts intact

    def score(method) -> list[bool]:
        return correct_rows(study, method, rows, pt_exp.train.eval_batch_size)

    ensure_ray(pt_exp)
    if "peer" in cfg.parts and "peer" not in result:
        from pipeline.bench.trials import TrialClock

        clock = out_dir / "events-peer.jsonl"
        clock.unlink(missing_ok=True)
        peer = run_peer(pt_exp, features, enc.examples(task, val_ex), tok.pad_token_id, abs_lrs, cfg.num_tokens,
                        out_dir, [TrialClock(clock)])
        method = study.build(PTConfig(num_tokens=cfg.num_tokens), pt_exp.seed)
        method.prompt.data.copy_(peer.pop("prompt"))
        peer.update(correct=score(method.eval()), trial_steps=sum(t["steps"] for t in peer["trials"]),
                    split=peer_split(_events(clock), _events(Path(peer["clock"]))))
        result["peer"] = peer
        save()
    if "ours" in cfg.parts and "ours" not in result:
        rec, summary = _our_search(pt_exp, out_dir, "ours", register=True)
        rec["correct"] = score(load_prompt(summary.best_checkpoint, info)[0].eval())
        result["ours"] = rec
        save()
    if "methods" in cfg.parts and "methods" not in result:
        part = {}
        for sched in ("asha", "fifo"):
            exp = resolve_paths(_pinned(experiment(cfg, "methods", sched), out_dir, f"methods-{sched}"))
            rec, summary = _our_search(exp, out_dir, f"methods-{sched}", register=False)
            rec["correct"] = score(load_prompt(summary.best_checkpoint, info)[0].eval())
            part[sched] = rec
        result["methods"] = part
        save()
    return result


def bench_search_command(cfg: SearchBenchConfig, out_dir: str | Path) -> str:
    """`promptfarm bench-search CONFIG --out DIR`: run the missing parts, write search.md; the text to print."""
    from pipeline.bench.search_report import write

    result = run(cfg, out_dir)
    exp = experiment(cfg, "ours")
    task = getattr(exp.data.task, "name", exp.data.task)
    title = (f"{exp.backbone.gguf or exp.backbone.name_or_path}, {task}, {exp.train.max_steps} steps per "
             f"trial (eval every {exp.train.eval_every})")
    text, page = write(result, out_dir, title, exp.search.reduction_factor)
    return text + f"\nwrote {page}, {Path(out_dir) / RESULT}"
