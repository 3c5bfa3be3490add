"""Predict with a stored prompt: load its recorded backbone, refuse a mismatching one, and label (classification),
write (generation) or score (regression) inputs exactly as the trial's own evaluation did: the artifact records
the task definition and the encoding, so no config is needed."""

from __future__ import annotations

import logging
import typing
from dataclasses import dataclass
from pathlib import Path

import torch

from pipeline.artifact import (
    CONFIG_FILE,
    PromptArtifactError,
    load_prompt,
    read_prompt_meta,
    recorded_encoding,
    recorded_task,
)
from pipeline.config import BackboneConfig, DataConfig
from pipeline.data.encode import Encoder, Encoding
from pipeline.data.tasks import Task
from pipeline.evaluation.score import score_examples
from pipeline.model.prompted import NoPrompt, PromptedModel


@dataclass
class Predictor:
    """A PromptedModel in eval mode with its task and encoder."""

    model: PromptedModel
    """Frozen backbone + loaded prompt method."""
    encoder: Encoder
    """Tokenisation for the backbone family, as recorded."""
    task: Task
    """The task the prompt was trained on (its recorded definition)."""
    meta: dict
    """prompt_config.json contents."""
    device: torch.device = torch.device("cpu")
    """Where batches are scored (the backbone's device)."""

    @staticmethod
    def backbone_config(prompt_dir: str | Path, backbone: str | None = None, dtype: str | None = None,
                        trust_remote_code: bool = False, quantization: str | None = None,
                        meta: dict | None = None) -> BackboneConfig:
        """The backbone `load` loads for the prompt in `prompt_dir`: `backbone` or the recorded id/path, with
        `quantization` and `dtype` (None: the recorded ones); `meta`: its already read prompt_config.json."""
        meta = meta or read_prompt_meta(prompt_dir)
        rec = meta["backbone"]
        recorded_dtype = rec.get("dtype") or meta.get("encoding", {}).get("dtype", "float32")
        _recorded_choice(recorded_dtype, "dtype", "backbone.dtype" if "dtype" in rec else "encoding.dtype", prompt_dir)
        _recorded_choice(rec.get("quantization", "none"), "quantization", "backbone.quantization", prompt_dir)
        return BackboneConfig(name_or_path=backbone or rec["name_or_path"],
                              revision=None if backbone else rec.get("revision"), dtype=dtype or recorded_dtype,
                              gguf=None if backbone else rec.get("gguf"), trust_remote_code=trust_remote_code,
                              quantization=quantization or rec.get("quantization", "none"))

    @classmethod
    def load(cls, prompt_dir: str | Path, backbone: str | None = None, dtype: str | None = None,
             trust_remote_code: bool = False, max_length: int | None = None,
             quantization: str | None = None, device: str | None = None) -> Predictor:
        """Backbone from `backbone` or the id/path recorded in the prompt, loaded with `quantization` and `dtype`
        (None: the recorded ones); method from the registry; tokenised exactly as in training (the artifact's
        `encoding`; `max_length` overrides its length); scored on `device` (None: CUDA when present, else CPU)."""
        from dataclasses import replace

        from pipeline.model.backbone import load_backbone

        meta = read_prompt_meta(prompt_dir)
        enc = recorded_encoding(meta, Path(prompt_dir) / CONFIG_FILE)
        if "encoding" not in meta:
            logging.getLogger("promptfarm").warning(
                f"prompt in {str(prompt_dir)!r} records no encoding (saved before promptfarm recorded one): scoring "
                "it with max_length 256, max_target_length 8, no decoder separator, float32")
        bcfg = cls.backbone_config(prompt_dir, backbone, dtype, trust_remote_code, quantization, meta)
        model, tok, info = load_backbone(bcfg)
        method, meta = load_prompt(prompt_dir, info, meta)
        dev = _device(device, model, bcfg.quantization)
        prompted = PromptedModel(model, method.to(model.dtype), info.is_seq2seq).to(dev).eval()
        encoder = Encoder(tok, info.is_seq2seq, replace(enc, max_length=max_length or enc.max_length))
        return cls(prompted, encoder, recorded_task(meta), meta, dev)

    @classmethod
    def frozen(cls, bcfg: BackboneConfig, data: DataConfig) -> Predictor:
        """The frozen baseline: the backbone alone (no prompt), with the same task, template, label words (from the
        training file when the task takes them from the data), encoding and scorer."""
        from pipeline.data.sources import with_data_labels
        from pipeline.model.backbone import load_backbone

        task = with_data_labels(data.task, data.train_file)
        model, tok, info = load_backbone(bcfg)
        prompted = PromptedModel(model, NoPrompt(), info.is_seq2seq).eval()
        meta = {"method": "frozen", "task": task.to_dict(), "backbone": info.to_dict()}
        return cls(prompted, Encoder(tok, info.is_seq2seq, Encoding.of(data)), task, meta)

    def predict(self, texts: list[str], field: str | None = None, batch_size: int = 32) -> list[str]:
        """Label word, generated text (or number, for regression) per text; `field` names the column it fills."""
        return self.predict_rows(text_rows(self.task, texts, field), batch_size)

    def predict_rows(self, rows: list[dict], batch_size: int = 32) -> list[str]:
        """Label word, generated text or number per row (a dict with the template's columns)."""
        missing = [f for f in self.task.text_fields if any(f not in r for r in rows)]
        if missing:
            raise ValueError(f"an input row lacks column {missing[0]!r} of task {self.task.name!r}'s template "
                             f"{self.task.template!r}")
        out: list[str] = []
        for i in range(0, len(rows), batch_size):
            for pred, *_ in score_examples(self.model, self.encoder, self.task, rows[i: i + batch_size], self.device,
                                           gold=False):
                out.append(self._as_text(pred))
        return out

    def _as_text(self, pred) -> str:
        if self.task.kind == "classification":
            return self.task.label_words[pred] if pred >= 0 else ""
        return pred if self.task.kind == "generation" else f"{pred:.2f}"

    def evaluate(self, split: str = "validation", path: str | None = None, limit: int | None = None,
                 batch_size: int = 32) -> dict[str, float]:
        """The task's metrics (+ loss) on `split` of the hub dataset or of a local file, as in training."""
        from pipeline.data.sources import load_examples
        from pipeline.evaluation.score import evaluate

        examples = load_examples(self.task, split, path, limit, seed=0)
        return evaluate(self.model, self.encoder, self.task, examples, batch_size, self.device)


def predict_inputs(prompt_dir: str | Path, texts: list[str] | None, file: Path | None, field: str | None, stdin,
                   **load) -> list[tuple[str, str]]:
    """(prediction, input) per input of `promptfarm predict`: TEXTs filling `field`, else (no TEXT, or `-`) one text
    per non-blank line of `stdin` (each shown as given), else the rows of `file` (shown rendered by the template);
    checked against the recorded task before the backbone loads (`load`: Predictor.load's keyword arguments)."""
    texts = None if texts == ["-"] else texts  # `-`: standard input, as other command-line tools read it
    if texts and file:
        raise ValueError(f"give inputs as TEXT arguments or --file {str(file)!r}, not both")
    if field is not None and file is not None:
        raise ValueError(f"--field {field!r} fills a template column from TEXT or standard input; a --file row "
                         "names its columns itself")
    task = recorded_task(read_prompt_meta(prompt_dir))
    if field is not None:
        text_rows(task, [], field)  # an unknown column is refused before any input is read
    if file is not None:
        rows = read_input_rows(task, file)
        shown = [task.source_text(r) for r in rows]
    else:
        shown = texts or [line.rstrip("\n") for line in stdin if line.strip()]
        rows = text_rows(task, shown, field)
        if not rows:
            raise ValueError("no inputs to predict; expected TEXT arguments, --file ROWS or lines on standard input")
    predictions = Predictor.load(prompt_dir, **load).predict_rows(rows)
    return list(zip(predictions, shown, strict=True))


def text_rows(task: Task, texts: list[str], field: str | None = None) -> list[dict]:
    """Rows for `texts`, each filling the template column `field` (default: the first), the others empty."""
    fields = task.text_fields
    field = field or fields[0]
    if field not in fields:
        raise ValueError(f"--field {field!r} is not a column of task {task.name!r}'s template; expected one of: "
                         f"{', '.join(fields)}")
    return [{f: "" for f in fields} | {field: t} for t in texts]


def read_input_rows(task: Task, path: Path) -> list[dict]:
    """Rows of a local JSONL/CSV/TSV/Parquet file to predict on: the template's columns (renamed as the task
    renames them); an answer column, when present, is ignored."""
    from pipeline.data.readers import read_rows

    if not Path(path).is_file():
        raise FileNotFoundError(f"input file {str(path)!r} not found; expected a JSONL/CSV/TSV/Parquet file with the "
                                f"columns {', '.join(task.text_fields)}")
    rows = []
    for number, raw in read_rows(Path(path)):
        row = {task.columns.get(k, k): v for k, v in raw.items()}
        missing = [f for f in task.text_fields if f not in row]
        if missing:
            raise ValueError(f"{path}:{number}: missing column {missing[0]!r} of task {task.name!r}'s template "
                             f"{task.template!r}")
        rows.append(row)
    if not rows:
        raise ValueError(f"input file {str(path)!r} has no rows; expected the columns {', '.join(task.text_fields)}")
    return rows


def _recorded_choice(value: str, field: str, key: str, prompt_dir: str | Path) -> None:
    """Refuse a recorded backbone setting that is not one of BackboneConfig.`field`'s values, naming the file."""
    allowed = typing.get_args(typing.get_type_hints(BackboneConfig)[field])
    if value not in allowed:
        raise PromptArtifactError(f"{Path(prompt_dir) / CONFIG_FILE}: '{key}' must be one of {list(allowed)}, got "
                                  f"{value!r:.40}")


def _device(device: str | None, model, quantization: str) -> torch.device:
    """`device`, else CUDA when present; a quantised backbone stays where bitsandbytes placed it."""
    if quantization != "none":
        return next(model.parameters()).device
    return torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
