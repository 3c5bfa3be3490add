"""`promptfarm search`, `train-one`, `suite` and `register`: run a search (or one trial, or one per task) and
register its best prompt."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pipeline.cli.common import NoRegister, Overrides, app, fail, interrupted, load, preflight, store_fault


def _report(s) -> None:
    from pipeline.tune.report import summary_text

    typer.echo(summary_text(s))
    typer.echo(f"search id: {s.search_id}")
    if s.best_trial:
        typer.echo(f"best: trial {s.best_trial} {s.metric}={s.best_value:.4f}")
    if s.registration:
        typer.echo(_registered(s.registration, s.metric))


def _registered(r, metric: str) -> str:
    """One line for a pipeline.records.Registration."""
    if r.version:
        champion = " (champion)" if r.champion else ""
        return f"registered {r.model_name} version {r.version}{champion} ({metric}={r.value:.4f})"
    return f"not registered: {metric}={r.value:.4f} does not beat the champion of {r.model_name}"


def _run_and_report(run, command: str, config: Path, overrides: list[str] | None, **kw) -> None:
    from pipeline.config import ConfigError
    from pipeline.tune.interrupt import Interrupted
    from pipeline.tune.storage import StorageFull, StoreUnwritable

    cfg = load(config, overrides)
    try:
        s = run(cfg, **kw)
    except (ConfigError, ValueError) as e:  # bad config, space or pre-flight: one line, before Ray starts
        fail(e)
    except Interrupted as e:
        interrupted(e, command, config, overrides)
    except (StorageFull, StoreUnwritable) as e:
        store_fault(e, command, config, overrides)
    _report(s)
    failed = sum(t.status == "failed" for t in s.trials)
    if not any(t.status == "completed" for t in s.trials):  # a job that produced nothing must not read as success
        pruned = sum(t.status == "pruned" for t in s.trials)
        typer.echo(f"error: no trial completed ({failed} of {len(s.trials)} failed, {pruned} pruned; reasons in the "
                   "table above and in their MLflow runs)", err=True)
        raise typer.Exit(1)
    if failed:
        typer.echo(f"{failed} of {len(s.trials)} trials failed (reasons in the table above and in their MLflow runs)")


@app.command()
def search(config: Path, overrides: Overrides = None,
           resume: Annotated[str | None, typer.Option(help="Search id to restore and finish")] = None,
           no_register: NoRegister = False) -> None:
    """Run an ASHA search of the configured method(s); register the best prompt as `champion`."""
    from pipeline.tune.search import run_search

    _run_and_report(run_search, "promptfarm search", config, overrides, resume=resume,
                    register=False if no_register else None)


@app.command("train-one")
def train_one(config: Path, overrides: Overrides = None,
              resume: Annotated[str | None, typer.Option(help="Search id of an interrupted train-one")] = None,
              no_register: NoRegister = False) -> None:
    """Train the configured method with the configured values (one trial, no sampling); track and register it."""
    from pipeline.tune.search import train_one as run

    _run_and_report(run, "promptfarm train-one", config, overrides, resume=resume,
                    register=False if no_register else None)


@app.command()
def suite(config: Path, overrides: Overrides = None,
          resume: Annotated[str | None, typer.Option(help="Suite id to finish")] = None,
          out: Annotated[Path | None, typer.Option(help="Also write table.md/.json, scores.png, curves.png here")]
          = None) -> None:
    """One ASHA search per task of a suite; every method's best trial on each report split; the table."""
    from pipeline.config import ConfigError
    from pipeline.suite.config import check_suite, load_suite_config
    from pipeline.tune.interrupt import Interrupted

    try:
        scfg = load_suite_config(config, overrides or [])
        check_suite(scfg)  # every task, before MLflow or Ray
        from pipeline.suite.run import run_suite, write_outputs

        s = run_suite(scfg, resume=resume)
    except (ConfigError, LookupError, FileNotFoundError) as e:
        fail(e)
    except Interrupted as e:
        interrupted(e, "promptfarm suite", config, overrides)
    typer.echo(s.markdown)
    typer.echo(f"suite id: {s.suite_id}")
    if out is not None:
        typer.echo("wrote " + ", ".join(str(p) for p in write_outputs(s, out)))
    if all(r.status == "failed" for r in s.results):  # nothing to compare: the job failed
        typer.echo("error: every task of the suite failed (reasons above)", err=True)
        raise typer.Exit(1)


@app.command()
def register(config: Path, overrides: Overrides = None,
             search_id: Annotated[str, typer.Option(help="Id printed by the finished search")] = "") -> None:
    """Register the best prompt of a finished search, from its MLflow trial runs, if it beats the champion."""
    from pipeline.tune.champion import register_search

    if not search_id:
        fail(ValueError("--search-id is required: the id `promptfarm search` printed"))
    cfg = load(config, overrides)
    from pipeline.preflight import check_tracking, tracking_uri

    preflight(check_tracking, tracking_uri(cfg.tracking.tracking_uri))
    try:
        registration = register_search(cfg, search_id)
    except (LookupError, ValueError) as e:  # no such search; a config naming another task or backbone
        fail(e)
    from pipeline.records import search_metric

    typer.echo(_registered(registration, search_metric(cfg)[0]))
