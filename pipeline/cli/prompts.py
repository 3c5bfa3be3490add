"""`promptfarm pull`, `predict`, `evaluate`, `export-peft`, `config` and `methods`: what a user does with a
registered prompt, and what the config and the methods are."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pipeline.cli.common import Overrides, app, fail, preflight


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
        fail(ValueError(f"--alias {alias!r} and --version {version!r} both pick a version; give one"))
    uri = resolve_tracking_uri(tracking_uri)
    preflight(check_tracking, uri)
    what = f"{name} version {version}" if version is not None else f"{name}@{alias or 'champion'}"
    try:
        path, pulled, digest = pull_pinned(name, out, alias or "champion", uri, version, sha256)
    except (PromptArtifactError, ValueError) as e:
        fail(e)
    except Exception as e:  # MLflow's own errors are long; keep the first line
        fail(Exception(f"could not pull {what}: {str(e).splitlines()[0]}"))
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
        fail(FileNotFoundError(f"prompt directory {str(prompt_dir.resolve())!r} not found; expected a directory "
                                "holding prompt_config.json and prompt.safetensors (`promptfarm pull` writes one)"))
    try:
        if quantization not in (None, "none", "nf4", "fp4", "int8"):
            raise ValueError(f"--quantization {quantization!r} is not allowed; expected none, nf4, fp4 or int8")
        # the backbone resolves (an uncached hub id offline: one line now, not ~25 s of hub retries)
        preflight(check_backbone, Predictor.backbone_config(prompt_dir, backbone, quantization=quantization))
        pairs = predict_inputs(prompt_dir, texts, file, field, sys.stdin, backbone=backbone, quantization=quantization)
    except (PromptArtifactError, FileNotFoundError, ImportError, ValueError) as e:
        fail(e)
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
    from pipeline.preflight import check_backbone, check_evaluate, check_tracking

    try:
        t = eval_target(model, overrides, alias, split, file, tracking_uri)
    except (ConfigError, FileNotFoundError) as e:
        fail(e)
    if t.cfg is not None:
        preflight(check_evaluate, t.cfg, split, t.file, t.tracking_uri)
    elif frozen:
        fail(ValueError(f"--frozen needs a CONFIG file (the backbone and task to score), got {model!r}"))
    else:
        preflight(check_tracking, t.tracking_uri)
    try:
        if frozen:
            metrics = evaluate_frozen(t.cfg, t.tracking_uri, split, t.file, limit)
        else:
            metrics = evaluate_registered(t.name, t.alias, t.tracking_uri, split, t.file, limit, check_backbone)
    except Exception as e:  # noqa: BLE001 - backbone, data and MLflow errors: one line
        what = f"the frozen {t.cfg.backbone.name_or_path}" if frozen else f"{t.name}@{t.alias}"
        fail(Exception(f"could not evaluate {what}: {str(e).splitlines()[0]}"))
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
        fail(e)


@app.command("config")
def show_config(section: Annotated[str | None, typer.Argument(help="train, data, search, ... or a method name")] = None
                ) -> None:
    """Print every config field (or one section's) with its type, default, allowed range and meaning."""
    from pipeline.config_doc import experiment_fields, to_text

    try:
        typer.echo(to_text(experiment_fields(section)))
    except ValueError as e:
        fail(e)


@app.command("methods")
def list_methods() -> None:
    """Print the registered prompt methods: paper, default trainable params (T5-Base, LLaMA-2-7B), cost."""
    from pipeline.methods.table import markdown

    typer.echo(markdown())
