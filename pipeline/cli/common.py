"""What every promptfarm command shares: the Typer app, the one-line error exit, config loading and the
resume hint of an interrupted run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False)


def fail(e: Exception) -> None:
    typer.echo(f"error: {e}", err=True)
    raise typer.Exit(2)


def preflight(check, *args) -> None:
    """Run a pipeline.preflight check (e.g. the tracking store answers: MLflow's own client would retry for
    minutes); its PreflightError is the command's one-line error."""
    from pipeline.preflight import PreflightError

    try:
        check(*args)
    except PreflightError as e:
        fail(e)


def load(config: Path, overrides: list[str] | None):
    from pipeline.config import ConfigError, load_config

    try:
        return load_config(config, overrides or [])
    except (ConfigError, FileNotFoundError) as e:
        fail(e)


Overrides = Annotated[list[str] | None, typer.Argument(help="Config overrides key.path=value")]
NoRegister = Annotated[bool, typer.Option("--no-register", help="Skip Model Registry registration")]


def resume_command(command: str, config: Path, overrides: list[str] | None, resume_id: str) -> str:
    """The command line that resumes a saved search or suite."""
    return " ".join([command, str(config), *(overrides or []), "--resume", resume_id])


def interrupted(e, command: str, config: Path, overrides: list[str] | None) -> None:
    """A search or suite stopped by Ctrl+C or SIGTERM and saved: print how to resume it, exit 128 + the signal."""
    again = resume_command(command, config, overrides, e.resume_id)
    typer.echo(f"interrupted: {e.resume_id} is saved; resume it with: {again}", err=True)
    raise typer.Exit(128 + e.signum) from None  # 130 after Ctrl+C, 143 after SIGTERM


def store_fault(e, command: str, config: Path, overrides: list[str] | None) -> None:
    """A search whose storage_path filled or whose tracking store stopped taking writes (pipeline.tune.storage):
    one line with the resume command, exit 1 (a fault, not bad input)."""
    again = resume_command(command, config, overrides, e.search_id)
    typer.echo(f"error: {e}; then resume it with: {again}", err=True)
    raise typer.Exit(1) from None
