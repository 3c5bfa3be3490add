"""`promptfarm submit` and `promptfarm jobs list|logs|stop`: Ray Jobs on a cluster."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pipeline.cli.common import app, fail

Address = Annotated[str | None, typer.Option(help="Ray Jobs API, e.g. http://HEAD:8265 (default: "
                                                   "$RAY_API_SERVER_ADDRESS or $RAY_ADDRESS, else loopback:8265)")]


@app.command()
def submit(config: Path, args: Annotated[list[str] | None, typer.Argument(help="Overrides k=v; job options")] = None,
           address: Address = None, job: Annotated[str, typer.Option(help="jobs/ module to run")] = "search",
           env: Annotated[list[str] | None, typer.Option(help="KEY=VALUE env var for the job (repeatable)")] = None,
           tracking_uri: Annotated[str | None, typer.Option(help="MLflow URI the job uses "
                                                            "(default $MLFLOW_TRACKING_URI)")] = None,
           working_dir: Annotated[Path, typer.Option(help="Uploaded; CONFIG must be inside")] = Path("."),
           exclude: Annotated[list[str] | None, typer.Option(
               help="Gitignore pattern kept from the upload (repeatable); secrets and stores are always kept")] = None,
           wait: Annotated[bool, typer.Option(help="Stream logs to the end; exit 1 unless SUCCEEDED")] = True,
           ) -> None:
    """Submit `python -m jobs.<job> CONFIG ...` to a Ray cluster; prints the submission id (then its logs)."""
    from pipeline.config import ConfigError
    from pipeline.submit import SubmitError, follow
    from pipeline.submit import submit as do_submit

    try:
        job_id = do_submit(config, args or [], address, job, parse_env_or_fail(env), working_dir, tracking_uri,
                           exclude or [], typer.echo)
    except (SubmitError, ConfigError, FileNotFoundError) as e:
        fail(e)
    typer.echo(f"submitted {job_id}")
    if wait:
        status = follow(job_id, address, typer.echo)  # the client already connected once: errors here are rare
        typer.echo(f"{job_id} {status}")
        if status != "SUCCEEDED":
            raise typer.Exit(1)


def parse_env_or_fail(pairs: list[str] | None) -> dict[str, str]:
    from pipeline.submit import SubmitError, parse_env

    try:
        return parse_env(pairs or [])
    except SubmitError as e:
        fail(e)


def _jobs(address: str | None, call):
    """call(JobSubmissionClient) with the client's and its requests' failures (unreachable, silent head) as one line."""
    from pipeline.submit import SubmitError, client

    try:
        return call(client(address))
    except SubmitError as e:
        fail(e)


jobs_app = typer.Typer(add_completion=False, no_args_is_help=True, help="List, follow and stop Ray jobs.")
app.add_typer(jobs_app, name="jobs")


@jobs_app.command("list")
def jobs_list(address: Address = None) -> None:
    """One line per job: submission id, status, entrypoint."""
    for j in sorted(_jobs(address, lambda c: c.list_jobs()), key=lambda j: j.start_time or 0):
        typer.echo(f"{j.submission_id or j.job_id}\t{j.status.value}\t{j.entrypoint}")


@jobs_app.command("logs")
def jobs_logs(job_id: str, address: Address = None,
              follow: Annotated[bool, typer.Option(help="Stream until the job ends")] = False) -> None:
    """Print a job's logs."""
    from pipeline.submit import SubmitError
    from pipeline.submit import follow as do_follow

    if follow:
        try:
            typer.echo(f"{job_id} {do_follow(job_id, address, typer.echo)}")
        except SubmitError as e:
            fail(e)
    else:
        typer.echo(_jobs(address, lambda c: c.get_job_logs(job_id)))


@jobs_app.command("stop")
def jobs_stop(job_id: str, address: Address = None) -> None:
    """Ask the cluster to stop a job."""
    typer.echo(f"{job_id} {'stopping' if _jobs(address, lambda c: c.stop_job(job_id)) else 'already finished'}")
