"""A prompt artifact carries how its inputs were encoded (lengths, decoder separator, backbone dtype), and every
loader scores it exactly as training did; an artifact from before the record still loads, with a one-line note."""

from __future__ import annotations

import json
import logging

import torch

from pipeline import methods
from pipeline.artifact import CONFIG_FILE, save_prompt
from pipeline.config import BackboneConfig
from pipeline.data.builtin import get_task
from pipeline.data.encode import Encoder, Encoding
from pipeline.data.sources import load_examples
from pipeline.evaluation.predictor import Predictor
from pipeline.evaluation.score import evaluate
from pipeline.methods.pt import PTConfig
from pipeline.model.backbone import embedding_rows, load_backbone
from pipeline.model.prompted import PromptedModel
from tests.conftest import FIXTURES

ENCODING = {"max_length": 12, "max_target_length": 3, "decoder_separator": " Label :"}
VALIDATION = str(FIXTURES / "sst2_tiny" / "validation.tsv")


def _saved(tiny_dirs, tmp_path, encoding: dict | None):
    model, tok, info = load_backbone(BackboneConfig(name_or_path=str(tiny_dirs["llama"])))
    cfg = PTConfig(num_tokens=3)
    method = methods.build(cfg, info, embedding_rows(model, tok), seed=0)
    with torch.no_grad():
        method.prompt.add_(torch.randn_like(method.prompt))  # a prompt that changes the scores
    save_prompt(tmp_path, cfg, method.state_dict(), info, get_task("sst2"), Encoding(**(encoding or {})))
    if encoding is None:  # as saved before artifacts recorded an encoding (the tensors' digest is unchanged)
        meta = json.loads((tmp_path / CONFIG_FILE).read_text())
        del meta["encoding"]
        (tmp_path / CONFIG_FILE).write_text(json.dumps(meta))
    return model, tok, method


def test_predictor_scores_exactly_as_the_recorded_encoding(tiny_dirs, tmp_path):
    model, tok, method = _saved(tiny_dirs, tmp_path, ENCODING)
    task = get_task("sst2")
    rows = load_examples(task, "validation", VALIDATION, None, seed=0)
    training = evaluate(PromptedModel(model, method, False).eval(), Encoder(tok, False, Encoding(12, 3, " Label :")),
                        task, rows, 32, torch.device("cpu"))
    loaded = Predictor.load(tmp_path)
    enc = loaded.encoder
    assert (enc.max_length, enc.max_target_length, enc.encoding.decoder_separator) == (12, 3, " Label :")
    assert loaded.evaluate("validation", VALIDATION) == training  # the suite and `promptfarm evaluate` path
    other = evaluate(PromptedModel(model, method, False).eval(), Encoder(tok, False, Encoding(256, 8, "")), task,
                     rows, 32, torch.device("cpu"))
    assert other["val_loss"] != training["val_loss"]  # the encoding matters: a loader ignoring it would differ
    assert Predictor.load(tmp_path, max_length=40).encoder.max_length == 40  # an explicit override wins


def test_an_artifact_without_an_encoding_loads_with_the_old_constants_and_a_note(tiny_dirs, tmp_path, caplog):
    _saved(tiny_dirs, tmp_path, None)
    assert "encoding" not in json.loads((tmp_path / CONFIG_FILE).read_text())
    with caplog.at_level(logging.WARNING, logger="promptfarm"):
        enc = Predictor.load(tmp_path).encoder
    assert (enc.max_length, enc.max_target_length, enc.encoding.decoder_separator) == (256, 8, "")
    notes = [r.getMessage() for r in caplog.records if "records no encoding" in r.getMessage()]
    assert len(notes) == 1 and "\n" not in notes[0] and str(tmp_path) in notes[0]


def test_an_artifact_of_the_previous_format_loads_as_its_builtin_task(tiny_dirs, tmp_path):
    """Before tasks were data an artifact recorded the task by name and the dtype inside `encoding`: it loads as
    that built-in task, with that encoding and dtype, and scores as a new artifact of the same prompt does."""
    _saved(tiny_dirs, tmp_path / "new", ENCODING)
    old = tmp_path / "old"
    old.mkdir()
    meta = json.loads((tmp_path / "new" / CONFIG_FILE).read_text())
    meta["task"], meta["encoding"] = "sst2", {**ENCODING, "dtype": "float32"}
    del meta["backbone"]["dtype"]
    (old / CONFIG_FILE).write_text(json.dumps(meta))
    (old / "prompt.safetensors").write_bytes((tmp_path / "new" / "prompt.safetensors").read_bytes())
    loaded = Predictor.load(old)
    assert loaded.task == get_task("sst2") and loaded.encoder.encoding == Encoding(**ENCODING)
    assert loaded.evaluate("validation", VALIDATION) == Predictor.load(tmp_path / "new").evaluate("validation",
                                                                                                 VALIDATION)
