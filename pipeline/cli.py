"""promptfarm command line.

    promptfarm search jobs/configs/smoke.yaml [key.path=value ...] [--resume SEARCH_ID]
    promptfarm train-one jobs/configs/smoke.yaml method.lr=0.3
    promptfarm suite jobs/configs/suite-tiny.yaml [--resume SUITE_ID]
    promptfarm register jobs/configs/smoke.yaml --search-id SEARCH_ID
    promptfarm evaluate sst2-tiny-llama@champion   |   promptfarm evaluate jobs/configs/smoke.yaml
    promptfarm submit jobs/configs/smoke.yaml --address http://HEAD:8265 --tracking-uri http://MLFLOW:5000
    promptfarm jobs list|logs ID|stop ID
    promptfarm bench jobs/configs/bench-tiny.yaml
    promptfarm bench-trials jobs/configs/smoke.yaml --out bench-trials
    promptfarm pull sst2-tiny-llama --alias champion --out ./prompt
    promptfarm predict ./prompt "a gripping, funny film"
    promptfarm methods
    promptfarm config [SECTION]
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False)


def _fail(e: Exception) -> None:
    typer.echo(f"error: {e}", err=True)
    raise typer.Exit(2)


def _preflight(check, *args) -> None:
    """Run a pipeline.preflight check (e.g. the tracking store answers: MLflow's own client would retry for
    minutes); its PreflightError is the command's one-line error."""
    from pipeline.preflight import PreflightError

    try:
        check(*args)
    except PreflightError as e:
        _fail(e)


def _load(config: Path, overrides: list[str] | None):
    from pipeline.config import ConfigError, load_config

    try:
        return load_config(config, overrides or [])
    except (ConfigError, FileNotFoundError) as e:
        _fail(e)


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


Overrides = Annotated[list[str] | None, typer.Argument(help="Config overrides key.path=value")]
NoRegister = Annotated[bool, typer.Option("--no-register", help="Skip Model Registry registration")]


def _interrupted(e, command: str, config: Path, overrides: list[str] | None) -> None:
    """A search or suite stopped by Ctrl+C or SIGTERM and saved: print how to resume it, exit 128 + the signal."""
    again = " ".join([command, str(config), *(overrides or []), "--resume", e.resume_id])
    typer.echo(f"interrupted: {e.resume_id} is saved; resume it with: {again}", err=True)
    raise typer.Exit(128 + e.signum) from None  # 130 after Ctrl+C, 143 after SIGTERM


def _run_and_report(run, command: str, config: Path, overrides: list[str] | None, **kw) -> None:
    from pipeline.config import ConfigError
    from pipeline.tune.interrupt import Interrupted

    cfg = _load(config, overrides)
    try:
        s = run(cfg, **kw)
    except (ConfigError, ValueError) as e:  # bad config, space or pre-flight: one line, before Ray starts
        _fail(e)
    except Interrupted as e:
        _interrupted(e, command, config, overrides)
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
        _fail(e)
    except Interrupted as e:
        _interrupted(e, "promptfarm suite", config, overrides)
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
        _fail(ValueError("--search-id is required: the id `promptfarm search` printed"))
    cfg = _load(config, overrides)
    from pipeline.preflight import check_tracking, tracking_uri

    _preflight(check_tracking, tracking_uri(cfg.tracking.tracking_uri))
    try:
        registration = register_search(cfg, search_id)
    except (LookupError, ValueError) as e:  # no such search; a config naming another task or backbone
        _fail(e)
    from pipeline.records import search_metric

    typer.echo(_registered(registration, search_metric(cfg)[0]))


@app.command()
def pull(name: str, out: Annotated[Path, typer.Option(help="Directory to write the prompt into")] = Path("prompt"),
         alias: Annotated[str | None, typer.Option(help="Registry alias (default: champion)")] = None,
         version: Annotated[str | None, typer.Option(help="Registry version number, instead of an alias")] = None,
         sha256: Annotated[str | None, typer.Option(
             help="Refuse the download unless its prompt digest (sha256 of prompt_config.json) is this")] = None,
         tracking_uri: Annotated[str | None, typer.Option()] = None) -> None:
    """Download a registered prompt (models:/NAME@ALIAS, or NAME --version N) into OUT; print its version and
    digest, to pin it later with --version N --sha256 DIGEST."""
    from pipeline.artifact import PromptArtifactError
    from pipeline.preflight import check_tracking
    from pipeline.tracking.registry import pull_pinned
    from pipeline.tracking.runs import resolve_tracking_uri

    if alias is not None and version is not None:
        _fail(ValueError(f"--alias {alias!r} and --version {version!r} both pick a version; give one"))
    uri = resolve_tracking_uri(tracking_uri)
    _preflight(check_tracking, uri)
    what = f"{name} version {version}" if version is not None else f"{name}@{alias or 'champion'}"
    try:
        path, pulled, digest = pull_pinned(name, out, alias or "champion", uri, version, sha256)
    except (PromptArtifactError, ValueError) as e:
        _fail(e)
    except Exception as e:  # MLflow's own errors are long; keep the first line
        _fail(Exception(f"could not pull {what}: {str(e).splitlines()[0]}"))
    typer.echo(str(path))
    typer.echo(f"{'version ' + pulled + ' ' if pulled else ''}sha256 {digest}")


@app.command()
def predict(prompt_dir: Path, texts: Annotated[list[str] | None, typer.Argument(
                help="Inputs; none: one per line of --file, else of standard input")] = None,
            file: Annotated[Path | None, typer.Option(
                help="JSONL/CSV/TSV/Parquet rows with the template's columns, one prediction per row")] = None,
            backbone: Annotated[str | None, typer.Option(help="Override the recorded backbone id/path")] = None,
            field: Annotated[str | None, typer.Option(help="Template column each TEXT fills (default: first)")] = None,
            quantization: Annotated[str | None, typer.Option(
                help="Load the backbone quantised: none, nf4, fp4, int8 (default: as the prompt was trained)")] = None
            ) -> None:
    """Load backbone + prompt and print, for each input, the predicted label (classification), the generated text
    (generation) or the number (regression), then a tab and the input."""
    import sys

    from pipeline.artifact import PromptArtifactError
    from pipeline.evaluation.predictor import Predictor, predict_inputs
    from pipeline.preflight import check_backbone

    if not prompt_dir.is_dir():
        _fail(FileNotFoundError(f"prompt directory {str(prompt_dir.resolve())!r} not found; expected a directory "
                                "holding prompt_config.json and prompt.safetensors (`promptfarm pull` writes one)"))
    try:
        if quantization not in (None, "none", "nf4", "fp4", "int8"):
            raise ValueError(f"--quantization {quantization!r} is not allowed; expected none, nf4, fp4 or int8")
        # the backbone resolves (an uncached hub id offline: one line now, not ~25 s of hub retries)
        _preflight(check_backbone, Predictor.backbone_config(prompt_dir, backbone, quantization=quantization))
        pairs = predict_inputs(prompt_dir, texts, file, field, sys.stdin, backbone=backbone, quantization=quantization)
    except (PromptArtifactError, FileNotFoundError, ImportError, ValueError) as e:
        _fail(e)
    for out, text in pairs:
        typer.echo(f"{out.replace(chr(10), ' ')}\t{text.replace(chr(10), ' ')}")


@app.command()
def evaluate(model: Annotated[str, typer.Argument(help="NAME[@ALIAS] (default alias: champion), or a CONFIG file")],
             overrides: Overrides = None, alias: str = "champion", split: str = "validation",
             file: Annotated[str | None, typer.Option(help="Local JSONL/CSV/TSV instead of the hub split")] = None,
             limit: Annotated[int | None, typer.Option(help="Evaluate on the first N examples")] = None,
             tracking_uri: Annotated[str | None, typer.Option()] = None,
             frozen: Annotated[bool, typer.Option(help="CONFIG's backbone, no prompt: the frozen baseline")] = False,
             ) -> None:
    """Re-evaluate a registered prompt on a split; log the metrics to MLflow and tag the model version.

    Given a CONFIG, the model is the config's registered model and the data its validation file (all of it
    unless --limit; `data.max_eval_samples` is the search's selection subset). `--frozen` scores the config's
    backbone with no prompt instead: zero-shot rank classification over the same template and label words.
    """
    from pipeline.config import ConfigError
    from pipeline.evaluation.runs import eval_target, evaluate_frozen, evaluate_registered
    from pipeline.preflight import check_evaluate, check_tracking

    try:
        t = eval_target(model, overrides, alias, split, file, tracking_uri)
    except (ConfigError, FileNotFoundError) as e:
        _fail(e)
    if t.cfg is not None:
        _preflight(check_evaluate, t.cfg, split, t.file, t.tracking_uri)
    elif frozen:
        _fail(ValueError(f"--frozen needs a CONFIG file (the backbone and task to score), got {model!r}"))
    else:
        _preflight(check_tracking, t.tracking_uri)
    try:
        if frozen:
            metrics = evaluate_frozen(t.cfg, t.tracking_uri, split, t.file, limit)
        else:
            metrics = evaluate_registered(t.name, t.alias, t.tracking_uri, split, t.file, limit)
    except Exception as e:  # noqa: BLE001 - backbone, data and MLflow errors: one line
        what = f"the frozen {t.cfg.backbone.name_or_path}" if frozen else f"{t.name}@{t.alias}"
        _fail(Exception(f"could not evaluate {what}: {str(e).splitlines()[0]}"))
    for key, value in metrics.items():
        typer.echo(f"{key}\t{value:.4f}")


@app.command("export-peft")
def export_peft(prompt_dir: Path, out: Path) -> None:
    """Write a PT prompt as a Hugging Face PEFT prompt-tuning adapter (PeftModel.from_pretrained loads OUT)."""
    from pipeline.artifact import PromptArtifactError
    from pipeline.export_peft import export_peft as run

    try:
        typer.echo(str(run(prompt_dir, out)))
    except (PromptArtifactError, ValueError) as e:
        _fail(e)


@app.command("config")
def show_config(section: Annotated[str | None, typer.Argument(help="train, data, search, ... or a method name")] = None
                ) -> None:
    """Print every config field (or one section's) with its type, default, allowed range and meaning."""
    from pipeline.config_doc import experiment_fields, to_text

    try:
        typer.echo(to_text(experiment_fields(section)))
    except ValueError as e:
        _fail(e)


@app.command("methods")
def list_methods() -> None:
    """Print the registered prompt methods: paper, default trainable params (T5-Base, LLaMA-2-7B), cost."""
    from pipeline.methods.table import markdown

    typer.echo(markdown())


@app.command()
def bench(config: Path, overrides: Overrides = None,
          out: Annotated[Path | None, typer.Option(help="Directory for bench.md and bench.json")] = None) -> None:
    """Benchmark every method against the frozen backbone alone and HF PEFT's PromptTuning (step, memory, latency)."""
    from pipeline.bench.run import bench_command
    from pipeline.config import ConfigError

    try:
        typer.echo(bench_command(config, overrides or [], out))
    except (ConfigError, FileNotFoundError) as e:
        _fail(e)


@app.command("bench-trials")
def bench_trials(config: Path, overrides: Overrides = None,
                 out: Annotated[Path, typer.Option(help="Directory for trials.md, trials.json and the event logs")]
                 = Path("bench-trials")) -> None:
    """Per-trial fixed overhead of the config's search: a worker group per trial against warm in-process trials."""
    from pipeline.bench.trials import bench_trials_command
    from pipeline.config import ConfigError

    cfg = _load(config, overrides)
    try:
        typer.echo(bench_trials_command(cfg, out))
    except (ConfigError, ValueError) as e:
        _fail(e)


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
        _fail(e)
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
        _fail(e)


def _jobs(address: str | None, call):
    """call(JobSubmissionClient) with the client's and its requests' failures (unreachable, silent head) as one line."""
    from pipeline.submit import SubmitError, client

    try:
        return call(client(address))
    except SubmitError as e:
        _fail(e)


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
            _fail(e)
    else:
        typer.echo(_jobs(address, lambda c: c.get_job_logs(job_id)))


@jobs_app.command("stop")
def jobs_stop(job_id: str, address: Address = None) -> None:
    """Ask the cluster to stop a job."""
    typer.echo(f"{job_id} {'stopping' if _jobs(address, lambda c: c.stop_job(job_id)) else 'already finished'}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
