"""One arm of a method study, trained in this process with the trial's own engine, then scored row by row.

An arm is a method section (e.g. DePT at a given prompt lr) over the experiment's backbone and data. It trains
exactly as a trial does (pipeline.train.loop: DeepSpeed engine, AdamW at absolute lrs from the unit rule, warm-up
and linear decay, the same seeded batches), without Ray or MLflow, so a study of several arms loads the backbone
and encodes the data once. The travel probe (pipeline.bench.travel) and the paired ablation
(pipeline.bench.ablation) are built on it.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field

import torch

from pipeline import methods
from pipeline.config import ExperimentConfig
from pipeline.data.encode import Encoder, Encoding
from pipeline.data.tasks import Task
from pipeline.evaluation.score import score_examples
from pipeline.methods.base import PromptMethod
from pipeline.model.backbone import embedding_rows, input_embedding_rms, load_backbone
from pipeline.model.prompted import PromptedModel
from pipeline.train.loop import batches, build_engine, encoded_data, train_step


@dataclass
class Study:
    """What every arm shares: the loaded backbone, its tokenizer, the task and the encoded training data."""

    cfg: ExperimentConfig
    """The base experiment (backbone, data, train); each arm replaces its method section."""
    model: torch.nn.Module
    """The frozen backbone, loaded once."""
    tokenizer: object
    """Its tokenizer."""
    info: object
    """Its BackboneInfo."""
    task: Task
    """The task with its label set."""
    encoder: Encoder
    """Tokenisation as in training."""
    features: list[dict]
    """Encoded training rows (seeded shuffle of data.train_file)."""
    rms: float
    """The backbone's input-embedding RMS (the unit rule's scale)."""

    @classmethod
    def load(cls, cfg: ExperimentConfig) -> Study:
        """Load the backbone and encode the training data of `cfg` once, in a gloo world of one."""
        from pipeline.train.warm import process_world

        process_world()
        model, tok, info = load_backbone(cfg.backbone)
        enc = Encoder(tok, info.is_seq2seq, Encoding.of(cfg.data))
        task, feats, _ = encoded_data(cfg.data, enc, cfg.seed)  # as a trial reads and encodes them
        return cls(cfg, model, tok, info, task, enc, feats, input_embedding_rms(model))

    def build(self, method_cfg, seed: int) -> PromptMethod:
        """A fresh method of `method_cfg` over the backbone (its init as a trial's, with label rows for 'labels')."""
        rows = embedding_rows(self.model, self.tokenizer, self.encoder.label_tokens(self.task))
        return methods.build(method_cfg, self.info, rows, seed=seed)


@dataclass
class Trained:
    """An arm after training: its method and what the steps cost."""

    method: PromptMethod
    """The trained method (float32, eval mode)."""
    step_s: list[float] = field(default_factory=list)
    """Wall seconds of every optimizer step."""
    losses: list[float] = field(default_factory=list)
    """Training loss of every step."""


def train(study: Study, cfg: ExperimentConfig, seed: int | None = None, on_step=None) -> Trained:
    """Train `cfg.method` for cfg.train.max_steps with the trial's engine and schedule; `on_step(step, method)` runs
    after every step (the travel probe records there)."""
    seed = cfg.seed if seed is None else seed
    torch.manual_seed(seed)
    method = study.build(cfg.method, seed)
    engine = build_engine(cfg, PromptedModel(study.model, method, study.info.is_seq2seq), method, 0)
    stream = batches(study.features, cfg.train.batch_size, study.tokenizer.pad_token_id, seed)
    out = Trained(method)
    for step in range(1, cfg.train.max_steps + 1):
        start = time.perf_counter()
        out.losses += train_step(engine, stream, cfg.train.grad_accum, "cpu", step, 1)
        out.step_s.append(time.perf_counter() - start)
        if on_step is not None:
            on_step(step, method)
    engine.destroy()
    method.eval()
    return out


def correct_rows(study: Study, method: torch.nn.Module, rows: list[dict], batch_size: int) -> list[bool]:
    """Per report row, whether the prompt's rank-classification prediction equals the gold label."""
    model = PromptedModel(study.model, method, study.info.is_seq2seq).eval()
    out: list[bool] = []
    with torch.no_grad():
        for i in range(0, len(rows), batch_size):
            chunk = rows[i: i + batch_size]
            preds = [p for p, *_ in score_examples(model, study.encoder, study.task, chunk, "cpu", gold=False)]
            out += [p == study.task.label(ex) for p, ex in zip(preds, chunk, strict=True)]
    return out


def without(method: PromptMethod, part: str) -> PromptMethod:
    """A copy of the trained `method` with its own part `part` zeroed (`PromptMethod.zero_part`)."""
    copy_ = copy.deepcopy(method)
    copy_.zero_part(part)
    return copy_


def source_lengths(study: Study, rows: list[dict]) -> list[int]:
    """Tokens of each report row's source text (the input-length axis of the ablation)."""
    return [len(study.tokenizer(study.task.source_text(ex))["input_ids"]) for ex in rows]
