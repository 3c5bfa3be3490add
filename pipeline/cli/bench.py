"""`promptfarm bench` and `bench-trials`: the step-level benchmark and the per-trial fixed overhead."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pipeline.cli.common import Overrides, app, fail, load


@app.command()
def bench(config: Path, overrides: Overrides = None,
          out: Annotated[Path | None, typer.Option(help="Directory for bench.md and bench.json")] = None) -> None:
    """Benchmark every method against the frozen backbone alone and HF PEFT's PromptTuning (step, memory, latency)."""
    from pipeline.bench.run import bench_command
    from pipeline.config import ConfigError

    try:
        typer.echo(bench_command(config, overrides or [], out))
    except (ConfigError, FileNotFoundError) as e:
        fail(e)


@app.command("bench-trials")
def bench_trials(config: Path, overrides: Overrides = None,
                 out: Annotated[Path, typer.Option(help="Directory for trials.md, trials.json and the event logs")]
                 = Path("bench-trials")) -> None:
    """Per-trial fixed overhead of the config's search: a worker group per trial against warm in-process trials."""
    from pipeline.bench.trials import bench_trials_command
    from pipeline.config import ConfigError

    cfg = load(config, overrides)
    try:
        typer.echo(bench_trials_command(cfg, out))
    except (ConfigError, ValueError) as e:
        fail(e)


@app.command("bench-travel")
def bench_travel(config: Path, overrides: Overrides = None,
                 out: Annotated[Path, typer.Option(help="Directory for travel.md and travel.json")] = Path("travel")
                 ) -> None:
    """How far each method's own parts move in a short run, in units of the backbone's embedding scale."""
    from pipeline.bench.study_config import load_study_config
    from pipeline.bench.travel import travel_command
    from pipeline.config import ConfigError

    try:
        typer.echo(travel_command(load_study_config(config, overrides or []), out))
    except (ConfigError, FileNotFoundError, ValueError) as e:
        fail(e)


@app.command("bench-ablation")
def bench_ablation(config: Path, overrides: Overrides = None,
                   out: Annotated[Path, typer.Option(help="Directory for ablation.md and ablation.json (a run "
                                                          "started again there skips the arms it holds)")]
                   = Path("ablation")) -> None:
    """The paired ablation: arms scored on the same rows (McNemar), own parts zeroed, accuracy by length, cost."""
    from pipeline.bench.ablation_report import ablation_command
    from pipeline.bench.study_config import load_study_config
    from pipeline.config import ConfigError

    try:
        typer.echo(ablation_command(load_study_config(config, overrides or []), out))
    except (ConfigError, FileNotFoundError, ValueError) as e:
        fail(e)


@app.command("bench-search")
def bench_search(config: Path, overrides: Overrides = None,
                 out: Annotated[Path, typer.Option(help="Directory for search.md and search.json (a run started "
                                                        "again there skips the parts it holds)")] = Path("search")
                 ) -> None:
    """Whole searches measured: HF Trainer + PEFT's search against promptfarm's, and ASHA against the grid."""
    from pipeline.bench.search_bench import bench_search_command
    from pipeline.bench.search_config import load_search_bench_config
    from pipeline.config import ConfigError
    from pipeline.tune.interrupt import Interrupted

    try:
        typer.echo(bench_search_command(load_search_bench_config(config, overrides or []), out))
    except (ConfigError, FileNotFoundError, ValueError) as e:
        fail(e)
    except Interrupted as e:  # a part's timing must be whole: the part runs again, the finished ones are kept
        typer.echo(f"interrupted: {e.resume_id} stopped; the same command again re-runs that part and keeps the "
                   f"finished ones in {out}", err=True)
        raise typer.Exit(128 + e.signum) from None
