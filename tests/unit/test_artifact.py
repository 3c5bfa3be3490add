"""Prompt artifacts: safetensors + JSON only; corrupt, mismatched or unknown artifacts fail in one line."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from pipeline import methods
from pipeline.artifact import CONFIG_FILE, TENSORS_FILE, PromptArtifactError, load_prompt, save_prompt
from pipeline.methods.base import BackboneInfo
from pipeline.methods.pt import PTConfig

INFO = BackboneInfo("tiny", None, "llama", False, 16, 100, 2)


@pytest.fixture
def saved(tmp_path):
    cfg = PTConfig(num_tokens=4)
    m = methods.build(cfg, INFO, None)
    torch.nn.init.normal_(m.prompt)
    save_prompt(tmp_path, cfg, m.state_dict(), INFO, "sst2", extra={"step": 5})
    return tmp_path, m


def test_only_json_and_safetensors_written(saved):
    d, m = saved
    assert sorted(p.name for p in d.iterdir()) == sorted([CONFIG_FILE, TENSORS_FILE])
    loaded, meta = load_prompt(d, INFO)
    assert torch.equal(loaded.prompt, m.prompt) and meta["step"] == 5 and meta["package_version"]


def _one_line_error(d, info=INFO, match=""):
    with pytest.raises(PromptArtifactError, match=match) as e:
        load_prompt(d, info)
    assert "\n" not in str(e.value)


def test_truncated_tensors_refused_and_left_untouched(saved):
    d, _ = saved
    data = (d / TENSORS_FILE).read_bytes()
    (d / TENSORS_FILE).write_bytes(data[: len(data) // 2])
    _one_line_error(d, match="corrupt or truncated")
    assert (d / TENSORS_FILE).read_bytes() == data[: len(data) // 2]  # nothing rewritten


def test_flipped_byte_refused(saved):
    d, _ = saved
    data = bytearray((d / TENSORS_FILE).read_bytes())
    data[-1] ^= 0xFF
    (d / TENSORS_FILE).write_bytes(bytes(data))
    _one_line_error(d, match="sha256")


def test_bad_json_unknown_method_missing_file(saved):
    d, _ = saved
    meta = json.loads((d / CONFIG_FILE).read_text())
    (d / CONFIG_FILE).write_text(json.dumps({**meta, "method": "nosuch"}))
    _one_line_error(d, match="unknown prompt method 'nosuch'; expected one of")
    (d / CONFIG_FILE).write_text("{not json")
    _one_line_error(d, match="not valid JSON")
    (d / CONFIG_FILE).unlink()
    _one_line_error(d, match="lacks prompt_config.json")


def test_bad_config_value_in_artifact(saved):
    d, _ = saved
    meta = json.loads((d / CONFIG_FILE).read_text())
    meta["config"]["num_tokens"] = -1
    (d / CONFIG_FILE).write_text(json.dumps(meta))
    _one_line_error(d, match=r"num_tokens=-1 is out of range")


@pytest.mark.parametrize(("field", "value"), [("hidden_size", 32), ("vocab_size", 101), ("model_type", "t5")])
def test_backbone_mismatch_refused(saved, field, value):
    d, _ = saved
    other = dataclasses.replace(INFO, name_or_path="other-model", **{field: value})
    _one_line_error(d, other, match=f"backbone mismatch: .*'other-model' has {field}=")


def test_save_is_atomic_over_existing(saved, monkeypatch):
    """A failing save leaves the previous good artifact loadable."""
    d, m = saved
    import pipeline.artifact as io

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(io, "save_file", boom)
    with pytest.raises(OSError):
        save_prompt(d, PTConfig(num_tokens=4), {"prompt": torch.zeros(4, 16)}, INFO, "sst2")
    loaded, _ = load_prompt(d, INFO)
    assert torch.equal(loaded.prompt, m.prompt)
