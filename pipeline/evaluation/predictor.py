"""Predict with a stored prompt: load its recorded backbone, refuse a mismatching one, label texts."""

from __future__ import annotations

import typing
from dataclasses import dataclass
from pathlib import Path

import torch

from pipeline.config import BackboneConfig
from pipeline.data.encode import Encoder
from pipeline.data.tasks import Task, get_task
from pipeline.evaluation.score import score_examples
from pipeline.methods.artifact import (
    CONFIG_FILE,
    ENCODING_DEFAULTS,
    PromptArtifactError,
    load_prompt,
    read_prompt_meta,
)
from pipeline.prompted import NoPrompt, PromptedModel


@dataclass
class Predictor:
    """A PromptedModel in eval mode with its task and encoder."""

    model: PromptedModel
    """Frozen backbone + loaded prompt method."""
    encoder: Encoder
    """Tokenisation for the backbone family."""
    task: Task
    """The task the prompt was trained on."""
    meta: dict
    """prompt_config.json contents."""
    device: torch.device = torch.device("cpu")
    """Where batches are scored (the backbone's device)."""

    @classmethod
    def load(cls, prompt_dir: str | Path, backbone: str | None = None, dtype: str | None = None,
             trust_remote_code: bool = False, max_length: int | None = None,
             quantization: str | None = None, device: str | None = None) -> Predictor:
        """Backbone from `backbone` or the id/path recorded in the prompt, loaded with `quantization` and `dtype`
        (None: the recorded ones); method from the registry; tokenised exactly as in training (the artifact's
        `encoding`; `max_length` overrides its length); scored on `device` (None: CUDA when present, else CPU)."""
        from pipeline.backbone import load_backbone

        meta = read_prompt_meta(prompt_dir)
        rec, enc = meta["backbone"], recorded_encoding(meta, prompt_dir)
        _recorded_choice(rec.get("quantization", "none"), "quantization", "backbone.quantization", prompt_dir)
        bcfg = BackboneConfig(name_or_path=backbone or rec["name_or_path"],
                              revision=None if backbone else rec.get("revision"), dtype=dtype or enc["dtype"],
                              gguf=None if backbone else rec.get("gguf"), trust_remote_code=trust_remote_code,
                              quantization=quantization or rec.get("quantization", "none"))
        model, tok, info = load_backbone(bcfg)
        method, meta = load_prompt(prompt_dir, info, meta)
        dev = _device(device, model, bcfg.quantization)
        prompted = PromptedModel(model, method.to(model.dtype), info.is_seq2seq).to(dev).eval()
        encoder = Encoder(tok, info.is_seq2seq, max_length or enc["max_length"], enc["max_target_length"],
                          enc["decoder_separator"])
        return cls(prompted, encoder, get_task(meta["task"]), meta, dev)

    @classmethod
    def frozen(cls, bcfg: BackboneConfig, task: str, max_length: int = 256, separator: str = "") -> Predictor:
        """The frozen baseline: the backbone alone (no prompt), same template (pass the config's
        `data.decoder_separator`), label words and scorer."""
        from pipeline.backbone import load_backbone

        model, tok, info = load_backbone(bcfg)
        prompted = PromptedModel(model, NoPrompt(), info.is_seq2seq).eval()
        meta = {"method": "frozen", "task": task, "backbone": info.to_dict()}
        return cls(prompted, Encoder(tok, info.is_seq2seq, max_length, 8, separator), get_task(task), meta)

    def predict(self, texts: list[str], field: str | None = None, batch_size: int = 32) -> list[str]:
        """Label word (or number, for regression) per text; `field` names the task input it fills."""
        field = field or self.task.text_fields[0]
        examples = [{f: "" for f in self.task.text_fields} | {field: t, "label": 0} for t in texts]
        out: list[str] = []
        for i in range(0, len(examples), batch_size):
            rows = score_examples(self.model, self.encoder, self.task, examples[i: i + batch_size], self.device)
            for pred, *_ in rows:
                out.append(self.task.label_words[pred] if self.task.is_classification else f"{pred:.2f}")
        return out

    def evaluate(self, split: str = "validation", path: str | None = None, limit: int | None = None,
                 batch_size: int = 32) -> dict[str, float]:
        """The task's metrics (+ loss) on `split` of the hub dataset or of a local file, as in training."""
        from pipeline.data.sources import load_examples
        from pipeline.evaluation.score import evaluate

        examples = load_examples(self.task, split, path, limit, seed=0)
        return evaluate(self.model, self.encoder, self.task, examples, batch_size, self.device)


def recorded_encoding(meta: dict, prompt_dir: str | Path = "") -> dict:
    """The artifact's `encoding` (lengths, decoder separator, backbone dtype), or the old constants with a note."""
    if "encoding" not in meta:
        import logging

        logging.getLogger("promptfarm").warning(
            f"prompt in {str(prompt_dir)!r} records no encoding (saved before promptfarm recorded one): scoring it "
            f"with max_length 256, max_target_length 8, no decoder separator, float32")
        return dict(ENCODING_DEFAULTS)
    enc = {**ENCODING_DEFAULTS, **meta["encoding"]}
    _recorded_choice(enc["dtype"], "dtype", "encoding.dtype", prompt_dir)
    return enc


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
