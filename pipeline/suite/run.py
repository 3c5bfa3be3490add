"""Run a suite: one ASHA search per task as a Ray task (several at once when the cluster has room), each method's
best trial scored on the task's report split, the table logged to one MLflow parent run with the task searches as
its children. State lives on that run (a status tag and a result JSON per task), so `resume` re-runs nothing that
finished, restores a half-done search with Tuner.restore and registers no version twice.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import ray

from pipeline.config import ExperimentConfig, absolute_path
from pipeline.data.metrics import wilson_interval
from pipeline.records import ROLE_TAG, SUITE_TAG
from pipeline.suite.config import SuiteConfig, SuiteTask, task_config
from pipeline.suite.table import FROZEN, Cell, TaskResult, build_table, table_json, to_markdown
from pipeline.tune.interrupt import Interrupted


@dataclass
class SuiteSummary:
    """What a finished suite produced."""

    suite_id: str
    """Id to pass to `--resume`; tagged on the suite's MLflow run."""
    results: list[TaskResult]
    """One per task, in config order."""
    table: dict
    """`pipeline.suite.table.build_table` output."""
    markdown: str
    """The table as markdown (also logged as table.md)."""
    run_id: str
    """The suite's MLflow parent run."""


def run_suite(scfg: SuiteConfig, resume: str | None = None) -> SuiteSummary:
    """Run (or with `resume`=suite id, finish) every task's search, score the report splits, build the table."""
    from pipeline.tracking.runs import experiment_id, find_run, get_or_create_run, mlflow_client, resolve_tracking_uri
    from pipeline.tune.cluster import ensure_ray, resolve_paths

    cfgs = {t.name: resolve_paths(task_config(scfg, t)) for t in scfg.tasks}
    first = cfgs[scfg.tasks[0].name]
    uri = resolve_tracking_uri(first.tracking.tracking_uri)
    client = mlflow_client(uri)
    exp_id = experiment_id(client, first)
    if resume and find_run(client, exp_id, {SUITE_TAG: resume}) is None:
        raise LookupError(f"suite {resume!r} not found in MLflow experiment {first.tracking.experiment!r} at {uri}; "
                          "expected the suite id printed when it started")
    suite_id = resume or f"{scfg.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    run_id = get_or_create_run(client, exp_id, suite_id, {SUITE_TAG: suite_id, ROLE_TAG: "suite"})
    if resume:  # an interrupted suite's run was closed KILLED: it runs again
        client.update_run(run_id, status="RUNNING")
    print(f"[promptfarm] suite id: {suite_id} ({'resuming' if resume else 'new'}; MLflow {uri}, run {run_id})",
          flush=True)
    tags = client.get_run(run_id).data.tags
    results: dict[str, TaskResult] = {}
    for t in scfg.tasks:
        if tags.get(f"task.{t.name}") == "done":  # finished before: its stored result, nothing re-run
            path = client.download_artifacts(run_id, f"tasks/{t.name}.json")
            results[t.name] = TaskResult.from_dict(json.loads(Path(path).read_text()))
            print(f"[promptfarm] suite task {t.name}: done earlier (search {results[t.name].search_id})", flush=True)
    ensure_ray(first)
    todo = [t for t in scfg.tasks if t.name not in results]
    pending: dict = {}
    width = scfg.concurrent or _room(first)
    try:
        while todo or pending:
            while todo and len(pending) < width:
                t = todo.pop(0)
                cfg, search_id = cfgs[t.name], f"{suite_id}-{t.name}"
                client.set_tag(run_id, f"task.{t.name}", "running")
                restore = _tune_state_exists(cfg, search_id)
                register = cfg.tracking.register and not _registered(client, cfg, search_id)
                task = replace(t, report_file=absolute_path(t.report_file))  # Ray tasks run elsewhere
                # the validated records themselves travel (Ray pickles them): nothing is parsed or checked again
                ref = _task.remote(cfg, task, search_id, restore, register, run_id, uri, scfg.frozen)
                pending[ref] = t
            ready, _ = ray.wait(list(pending), num_returns=1)
            t = pending.pop(ready[0])
            result = TaskResult.from_dict(ray.get(ready[0]))
            results[t.name] = result
            client.log_text(run_id, json.dumps(asdict(result), indent=2), f"tasks/{t.name}.json")
            client.set_tag(run_id, f"task.{t.name}", result.status)
            print(f"[promptfarm] suite task {t.name}: {result.status}"
                  + (f" ({result.reason})" if result.reason else ""), flush=True)
    except KeyboardInterrupt:  # Ctrl+C: finished tasks are recorded on the run; --resume restores the rest
        client.set_terminated(run_id, "KILLED")
        raise Interrupted(suite_id) from None
    ordered = [results[t.name] for t in scfg.tasks]
    methods = _methods(first)
    table = build_table(ordered, methods, scfg.frozen)
    markdown = to_markdown(table)
    _log_table(client, run_id, table, markdown, ordered)
    client.set_terminated(run_id, "FINISHED")
    return SuiteSummary(suite_id, ordered, table, markdown, run_id)


def _methods(cfg: ExperimentConfig) -> list[str]:
    """Row order: the search's methods as configured, else its one method."""
    return list(cfg.search.methods) or [cfg.method_name]


def _room(cfg: ExperimentConfig) -> int:
    """Task searches the cluster runs side by side: how many trials of one fit at once (at least 1)."""
    from pipeline.tune.cluster import concurrency

    return concurrency(cfg)


def _tune_state_exists(cfg: ExperimentConfig, search_id: str) -> bool:
    """A search of this id started before (its Tune experiment state is in storage): restore it, do not restart."""
    from ray.tune import Tuner

    return Tuner.can_restore(f"{cfg.storage_path.rstrip('/')}/{search_id}")


def _registered(client, cfg: ExperimentConfig, search_id: str) -> bool:
    """The search already registered a version (it finished, then the suite died before recording it)."""
    from pipeline.tracking.registry import registered_name
    from pipeline.tracking.runs import filter_literal

    name = filter_literal(registered_name(cfg))  # a plain name (checked at load), quoted as every filter is
    try:
        versions = client.search_model_versions(f"name = {name}")
    except Exception:  # noqa: BLE001 - no such model yet
        return False
    return any(v.tags.get("search_id") == search_id for v in versions)


@ray.remote(num_cpus=0)  # waits on its search; the trials hold the CPUs
def _task(cfg: ExperimentConfig, t: SuiteTask, search_id: str, restore: bool, register: bool, parent: str, uri: str,
          frozen: bool) -> dict:
    """One task: its search, then every method's best trial (and the frozen backbone) on the report split."""
    from pipeline.tune.search import run_search

    try:
        s = run_search(cfg, resume=search_id if restore else None, register=register, search_id=search_id,
                       parent_run=parent)
    except Exception as e:  # noqa: BLE001 - a task's failure is a table entry, the other tasks go on
        return asdict(TaskResult(t.name, "failed", reason=_one_line(e), search_id=search_id))
    steps = sum(tr.steps for tr in s.trials)
    best = _best_per_method(s, cfg, uri)
    if not best:
        errors = [tr.error for tr in s.trials if tr.error]
        why = f"every trial failed: {errors[0]}" if errors else "no trial reported the search metric"
        return asdict(TaskResult(t.name, "failed", reason=why, search_id=search_id, trial_steps=steps))
    res = {"num_cpus": cfg.train.cpus_per_worker, "num_gpus": 1 if cfg.train.use_gpu else 0}
    scores = ray.get(_report_scores.options(**res).remote(cfg, t.report_split, t.report_file, t.report_limit,
                                                          {m: run for m, (_, run) in best.items()}, uri, frozen))
    metric = cfg.data.task.metric
    n = scores.pop("n")

    def interval(score: float | None) -> list[float] | None:
        return wilson_interval(score, n) if score is not None and metric == "accuracy" and n else None

    cells = {}
    for method, (trial, run) in best.items():
        cells[method] = Cell(scores[method], trial.trainable_params,
                             sum(tr.steps for tr in s.trials if tr.method == method), trial.trial_id, n,
                             interval(scores[method]), _curve(uri, run, f"val_{metric}"))
    if frozen:
        cells[FROZEN] = Cell(scores[FROZEN], 0, 0, None, n, interval(scores[FROZEN]))
    reg = s.registration
    return asdict(TaskResult(t.name, "done", metric, None, search_id, cells, steps,
                             reg.model_name if reg else None, reg.version if reg else None))


def _curve(uri: str, run_id: str | None, metric: str) -> list[list[float]]:
    """[step, selection metric, train loss] at every evaluation the trial's MLflow run logged."""
    from pipeline.tracking.runs import mlflow_client

    if run_id is None:
        return []
    client = mlflow_client(uri)
    loss = {m.step: m.value for m in client.get_metric_history(run_id, "train_loss")}
    return [[m.step, m.value, loss.get(m.step, float("nan"))]
            for m in sorted(client.get_metric_history(run_id, metric), key=lambda m: m.step)]


def _best_per_method(s, cfg: ExperimentConfig, uri: str) -> dict:
    """{method: (TrialSummary, MLflow run id)} of each method's best trial (records.best_trial's rule)."""
    from pipeline.records import SEARCH_TAG, TRIAL_TAG, best_trial
    from pipeline.tracking.runs import experiment_id, find_run, mlflow_client

    best = {m: best_trial([t for t in s.trials if t.method == m], s.mode) for m in {t.method for t in s.trials}}
    best = {m: tr for m, tr in best.items() if tr is not None}
    client = mlflow_client(uri)
    exp_id = experiment_id(client, cfg)
    return {m: (tr, find_run(client, exp_id, {SEARCH_TAG: s.search_id, TRIAL_TAG: tr.trial_id}))
            for m, tr in best.items()}


@ray.remote
def _report_scores(cfg: ExperimentConfig, split: str, path: str | None, limit: int | None, runs: dict, uri: str,
                   frozen: bool) -> dict:
    """{method: report-split score} of each method's best prompt (downloaded from its trial run), + frozen, and
    'n': the number of report examples."""
    import tempfile

    from pipeline.data.sources import load_examples, with_data_labels
    from pipeline.evaluation.predictor import Predictor
    from pipeline.tracking.runs import mlflow_client

    if not cfg.train.use_gpu:
        from pipeline.train.session import use_reserved_cpus

        use_reserved_cpus(cfg.train.cpus_per_worker)  # scoring held 1 of 2 reserved cores before
    key = f"val_{cfg.data.task.metric}"
    client = mlflow_client(uri)
    task = with_data_labels(cfg.data.task, cfg.data.train_file)
    out = {"n": len(load_examples(task, split, path, limit, seed=0))}  # as Predictor.evaluate
    for method, run_id in runs.items():
        with tempfile.TemporaryDirectory() as tmp:
            local = client.download_artifacts(run_id, "prompt", tmp)
            out[method] = Predictor.load(local).evaluate(split, path, limit)[key]
    if frozen:
        frozen_predictor = Predictor.frozen(cfg.backbone, cfg.data)
        out[FROZEN] = frozen_predictor.evaluate(split, path, limit)[key]
    return out


def _one_line(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[-1] if text else ''}"[:300]


def _log_table(client, run_id: str, table: dict, markdown: str, results: list[TaskResult]) -> None:
    """table.md, table.json, one plot (score per method per task) and one metric per (task, method) cell."""
    client.log_text(run_id, markdown, "table.md")
    client.log_text(run_id, json.dumps(table_json(table), indent=2), "table.json")
    for r in results:
        for method, cell in r.cells.items():
            if cell.score is not None:
                client.log_metric(run_id, f"{r.task}.{method}", cell.score)
    from pipeline.suite.plot import curve_figure, score_figure

    client.log_figure(run_id, score_figure(table), "scores.png")
    client.log_figure(run_id, curve_figure(table), "curves.png")


def write_outputs(summary: SuiteSummary, out_dir: str | Path) -> list[Path]:
    """table.md, table.json, scores.png and curves.png of a finished suite under `out_dir` (e.g. docs/results)."""
    from pipeline.suite.plot import curve_figure, score_figure

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "table.md").write_text(summary.markdown)
    (out / "table.json").write_text(json.dumps(table_json(summary.table), indent=2))
    score_figure(summary.table).savefig(out / "scores.png", dpi=120)
    curve_figure(summary.table).savefig(out / "curves.png", dpi=120)
    return [out / n for n in ("table.md", "table.json", "scores.png", "curves.png")]
