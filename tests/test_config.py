"""Config loading: YAML + overrides -> typed config; bad keys, types and ranges fail in one line."""

from __future__ import annotations

import pytest

from pipeline.config import ConfigError, ExperimentConfig, load_config
from pipeline.methods.pt import PTConfig

from .conftest import ROOT

SMOKE = ROOT / "jobs" / "configs" / "smoke.yaml"


def test_smoke_config_loads_typed():
    cfg = load_config(SMOKE)
    assert isinstance(cfg.method, PTConfig) and cfg.method_name == "pt"
    assert cfg.train.zero_stage == 2 and isinstance(cfg.train.max_steps, int)
    assert cfg.backbone.init_tiny == "llama"


def test_overrides_parse_yaml_values_and_nest():
    cfg = load_config(SMOKE, ["train.zero_stage=3", "method.lr=0.05", "train.use_gpu=true",
                              "data.max_eval_samples=null"])
    assert cfg.train.zero_stage == 3 and cfg.method.lr == 0.05 and cfg.train.use_gpu is True
    assert cfg.data.max_eval_samples is None


def test_int_accepted_for_float_but_not_bool_for_int():
    assert load_config(SMOKE, ["method.lr=1"]).method.lr == 1.0
    with pytest.raises(ConfigError, match=r"train.max_steps=True has the wrong type; expected int"):
        load_config(SMOKE, ["train.max_steps=true"])


@pytest.mark.parametrize(("override", "pattern"), [
    ("train.max_stepz=3", r"unknown key 'train.max_stepz'; allowed keys: max_steps, "),
    ("method.rank=3", r"unknown key 'method.rank'; allowed keys: num_tokens, lr, init"),
    ("train.zero_stage=1", r"train.zero_stage=1 is not allowed; expected one of \[2, 3\]"),
    ("train.batch_size=0", r"train.batch_size=0 is out of range; expected \[1, inf\]"),
    ("method.lr=0", r"method.lr=0.0 is out of range; expected \(0.0, inf\]"),
    ("data.max_length=abc", r"data.max_length='abc' has the wrong type; expected int"),
    ("method.name=prefix", r"unknown prompt method 'prefix'; expected one of: .*pt"),
    ("backbone.dtype=fp8", r"backbone.dtype='fp8' is not allowed"),
])
def test_bad_values_fail_with_one_line_naming_key_and_allowed(override, pattern):
    with pytest.raises((ConfigError, ValueError), match=pattern) as e:
        load_config(SMOKE, [override])
    assert "\n" not in str(e.value)


def test_missing_file_and_malformed_override():
    with pytest.raises(ConfigError, match="not found"):
        load_config(ROOT / "nope.yaml")
    with pytest.raises(ConfigError, match="not of the form"):
        load_config(SMOKE, ["train.max_steps"])


def test_round_trip_to_dict():
    cfg = load_config(SMOKE, ["method.num_tokens=7"])
    again = ExperimentConfig.from_dict(cfg.to_dict())
    assert again.to_dict() == cfg.to_dict() and again.method.num_tokens == 7


def test_init_tiny_writes_the_configured_size_once(tmp_path):
    from pipeline.backbone import ensure_backbone, load_backbone
    from pipeline.config import BackboneConfig

    cfg = BackboneConfig(name_or_path=str(tmp_path / "m"), init_tiny="llama", tiny_hidden=16, tiny_layers=3)
    ensure_backbone(cfg)
    model, _, info = load_backbone(cfg)
    assert (info.hidden_size, info.num_layers) == (16, 3)
    ensure_backbone(BackboneConfig(name_or_path=cfg.name_or_path, init_tiny="llama", tiny_hidden=32))
    assert load_backbone(cfg)[2].hidden_size == 16  # an existing model is never overwritten
