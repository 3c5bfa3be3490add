"""Config loading: YAML + overrides -> typed config; bad keys, types and ranges fail in one line."""

from __future__ import annotations

import os

import pytest

from pipeline.config import ConfigError, ExperimentConfig, load_config
from pipeline.methods.pt import PTConfig
from tests.conftest import ROOT

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
    from pipeline.config import BackboneConfig
    from pipeline.model.backbone import ensure_backbone, load_backbone

    cfg = BackboneConfig(name_or_path=str(tmp_path / "m"), init_tiny="llama", tiny_hidden=16, tiny_layers=3)
    ensure_backbone(cfg)
    model, _, info = load_backbone(cfg)
    assert (info.hidden_size, info.num_layers) == (16, 3)
    ensure_backbone(BackboneConfig(name_or_path=cfg.name_or_path, init_tiny="llama", tiny_hidden=32))
    assert load_backbone(cfg)[2].hidden_size == 16  # an existing model is never overwritten


# --- numbers as ML users write them ---------------------------------------------------------------------------------

SPELLINGS = [("1e-4", 1e-4), ("5E-3", 5e-3), ("+3e2", 300.0), ("1.0e4", 1e4), ("2e+1", 20.0), (".5", 0.5),
             ("1.", 1.0), ("1_000.5", 1000.5), ("'1e-4'", 1e-4)]  # quoted: a string float() reads


@pytest.mark.parametrize(("text", "value"), SPELLINGS)
def test_float_fields_take_every_spelling_float_reads_in_overrides_and_files(tmp_path, text, value):
    assert load_config(SMOKE, [f"method.lr={text}"]).method.lr == value
    path = tmp_path / "exp.yaml"
    path.write_text(f"method: {{name: pt, lr: {text}}}\ntrain: {{weight_decay: {text}}}\n")
    cfg = load_config(path)
    assert (cfg.method.lr, cfg.train.weight_decay) == (value, value)
    assert type(cfg.method.lr) is float


def test_exponent_floats_are_numbers_where_no_field_types_them(tmp_path):
    """search.space values and search.methods' fixed values are untyped dicts: 1e-4 must arrive as a number."""
    path = tmp_path / "exp.yaml"
    path.write_text("search:\n  methods: {dept: {lr_lowrank: 1e-4}}\n"
                    "  space: {method.lr: {loguniform: [1e-4, 1e-1]}}\n")
    cfg = load_config(path)
    assert cfg.search.space == {"method.lr": {"loguniform": [1e-4, 0.1]}}
    assert cfg.search.methods == {"dept": {"lr_lowrank": 1e-4}}


@pytest.mark.parametrize("text", [".nan", "nan", ".inf", "inf", "1e999", "'-Infinity'", "1" + "0" * 400])
def test_nan_and_inf_never_pass_a_range_check(tmp_path, text):
    finite = r"^method.lr=[-a-z]+ is not a finite number; expected a value in \(0.0, inf\]$"
    with pytest.raises(ConfigError, match=finite):
        load_config(SMOKE, [f"method.lr={text}"])
    path = tmp_path / "exp.yaml"
    path.write_text(f"train: {{grad_clip: {text}}}\n")
    with pytest.raises(ConfigError, match=r"^train.grad_clip=.* is not a finite number"):
        load_config(path)


@pytest.mark.parametrize("text", ["true", "abc", "1e-4x", "e5", "1__0e3", "[1e-4]", "{a: 1}"])
def test_non_numbers_and_bools_are_still_refused_for_floats(text):
    with pytest.raises(ConfigError, match=r"^method.lr=.* has the wrong type; expected float$"):
        load_config(SMOKE, [f"method.lr={text}"])


# --- config files that are not text ------------------------------------------------------------------------------

BINARY = {"invalid-utf8": b"name: x\nseed: \x80\x81\xfe\n", "nul": b"name: x\n\x00\x00\x00\x00seed: 1\n",
          "random": bytes((i * 167 + 13) % 256 for i in range(4096))}


@pytest.mark.parametrize("kind", list(BINARY))
def test_binary_config_file_is_one_line_naming_the_file(tmp_path, kind):
    path = tmp_path / "bad.yaml"
    path.write_bytes(BINARY[kind])
    with pytest.raises(ConfigError, match=rf"^config file '{path}' is binary, not text \(.* at offset \d+\)") as e:
        load_config(path)
    assert "\n" not in str(e.value)


def test_oversized_config_file_is_refused_without_parsing_it(tmp_path):
    from pipeline.schema import MAX_CONFIG_BYTES

    path = tmp_path / "big.yaml"
    path.write_text("name: x\n" + "#" * MAX_CONFIG_BYTES + "\n")
    with pytest.raises(ConfigError, match=r"is larger than 1024 KiB; expected a YAML experiment file"):
        load_config(path)


def test_values_pyyaml_cannot_build_are_one_line(tmp_path):
    path = tmp_path / "deep.yaml"
    path.write_text("seed: " + "9" * 5000 + "\n")  # over Python's 4300-digit int limit: PyYAML's ValueError
    with pytest.raises(ConfigError, match=r"^config file .* is not valid YAML: Exceeds the limit"):
        load_config(path)
    path.write_text("x: " + "[" * 20000 + "\n")
    with pytest.raises(ConfigError, match=r"is not valid YAML: nested too deeply"):
        load_config(path)


def test_cli_refuses_a_binary_config_in_one_line_before_anything_runs(tmp_path):
    """Through the real entry point: `promptfarm train-one bad.yaml` exits 2 with one error line, no traceback."""
    import subprocess
    import sys

    (tmp_path / "bad.yaml").write_bytes(BINARY["random"])
    proc = subprocess.run([sys.executable, "-m", "pipeline.cli", "train-one", "bad.yaml"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("error: config file 'bad.yaml' is binary") and proc.stderr.count("\n") == 1


def test_a_section_or_key_given_twice_is_refused_naming_both_lines(tmp_path):
    """PyYAML keeps the last of two `train:` sections: 24 steps would silently become the default 1,000."""
    path = tmp_path / "twice.yaml"
    path.write_text("train:\n  max_steps: 24\nmethod:\n  name: pt\ntrain:\n  eval_every: 5\n")
    with pytest.raises(ConfigError, match=r"key 'train' given twice \(first at line 1\); expected each key once "
                                          r"at line 5, column 1"):
        load_config(path)
    path.write_text("train:\n  max_steps: 24\n  max_steps: 1000\n")
    with pytest.raises(ConfigError, match=r"key 'max_steps' given twice \(first at line 2\)"):
        load_config(path)
    with pytest.raises(ConfigError, match=r"override 'train={a: 1, a: 2}'.*key 'a' given twice"):
        load_config(None, ["train={a: 1, a: 2}"])
    path.write_text("base: &b {max_steps: 24}\ntrain:\n  <<: *b\n  eval_every: 5\n")  # a merge is not a repeat
    with pytest.raises(ConfigError, match="unknown key 'base'"):
        load_config(path)


@pytest.mark.parametrize("key", ["name", "tracking.model_name"])
@pytest.mark.parametrize("value", ["../esc", "a/b", "/abs", "", ".hidden", "x" * 129])
def test_a_name_that_becomes_a_path_or_registry_name_is_one_plain_name(key, value):
    """`name=../esc` put the experiment outside storage_path; `tracking.model_name=team/sst2` failed in MLflow
    only after the whole search. Both are refused at load."""
    with pytest.raises(ConfigError, match=rf"{key}='.*' is not a plain name; expected letters, digits"):
        load_config(None, [f"{key}={value!r}"])
    assert load_config(None, [f"{key}=team-sst2_v1.2"])


def test_suite_and_suite_task_names_are_plain_names(tmp_path):
    from pipeline.suite.config import load_suite_config

    path = tmp_path / "suite.yaml"
    path.write_text("name: ok\ntasks:\n  - name: ../up\n    data: {task: sst2}\n")
    with pytest.raises(ConfigError, match=r"tasks.*name='../up' is not a plain name"):
        load_suite_config(path)
    path.write_text("name: a/b\ntasks:\n  - name: sst2\n    data: {task: sst2}\n")
    with pytest.raises(ConfigError, match=r"name='a/b' is not a plain name"):
        load_suite_config(path)
