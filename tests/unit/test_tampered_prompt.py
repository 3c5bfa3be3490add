"""Tampered prompt artifacts (wrong JSON types, lying safetensors headers, absurd sizes) fail in one line."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import pipeline.artifact as io
from pipeline import methods
from pipeline.artifact import CONFIG_FILE, TENSORS_FILE, PromptArtifactError, load_prompt, save_prompt
from pipeline.digest import file_sha256
from pipeline.evaluation.predictor import Predictor
from pipeline.export_peft import export_peft
from pipeline.methods.base import BackboneInfo
from pipeline.methods.pt import PTConfig
from tests.conftest import ROOT

INFO = BackboneInfo("tiny", None, "llama", False, 16, 100, 2)
ENCODING = {"max_length": 12, "max_target_length": 3, "decoder_separator": " Label :", "dtype": "float32"}
DROP = object()  # tamper value: delete the key
TAMPERED: set[str] = set()  # artifact directories whose tensors must never reach safetensors' loader


@pytest.fixture
def saved(tmp_path, monkeypatch):
    """A good PT artifact (4 x 16 prompt) in tmp_path; reading its tensors before every check passed is a failure."""
    cfg = PTConfig(num_tokens=4)
    m = methods.build(cfg, INFO, None)
    torch.nn.init.normal_(m.prompt)
    save_prompt(tmp_path, cfg, m.state_dict(), INFO, "sst2", extra={"step": 5, "encoding": ENCODING})
    real_load = io.load_file

    def checked_load(path):
        if str(Path(path).parent) in TAMPERED:
            raise AssertionError(f"{path} reached safetensors' loader although it was tampered with")
        return real_load(path)

    monkeypatch.setattr(io, "load_file", checked_load)
    return tmp_path


def _tamper_json(d, key: str, value) -> None:
    """Set the dotted `key` of prompt_config.json to `value` (DROP: delete it); the tensor hash stays valid."""
    meta = json.loads((d / CONFIG_FILE).read_text())
    *parents, last = key.split(".")
    node = meta
    for p in parents:
        node = node[p]
    if value is DROP:
        del node[last]
    else:
        node[last] = value
    (d / CONFIG_FILE).write_text(json.dumps(meta))


def _rehash(d) -> None:
    """Record the tampered tensor file's sha256, as a tamperer would, so only the other checks can refuse it."""
    _tamper_json(d, "tensors_sha256", file_sha256(d / TENSORS_FILE))


def _tamper_header(d, edit) -> None:
    """Rewrite the safetensors header (after its 8-byte length) with `edit(header)`; the data stays; rehash."""
    data = (d / TENSORS_FILE).read_bytes()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8: 8 + n])
    edit(header)
    raw = json.dumps(header).encode()
    (d / TENSORS_FILE).write_bytes(struct.pack("<Q", len(raw)) + raw + data[8 + n:])
    _rehash(d)


def _refused(d, match: str, call=None) -> str:
    """`call` (default: load_prompt over INFO) raises a one-line PromptArtifactError naming a file of `d` and
    matching `match`, and leaves both files as they were."""
    TAMPERED.add(str(d))
    before = {p.name: p.read_bytes() for p in d.iterdir()}
    with pytest.raises(PromptArtifactError, match=match) as e:
        (call or (lambda: load_prompt(d, INFO)))()
    msg = str(e.value)
    assert "\n" not in msg and str(d) in msg
    assert {p.name: p.read_bytes() for p in d.iterdir()} == before  # nothing rewritten
    return msg


def test_a_sha256_recorded_as_an_int_is_refused(saved):
    _tamper_json(saved, "tensors_sha256", 123)
    msg = _refused(saved, r"'tensors_sha256' must be a 64-hex-digit string, got int 123")
    assert CONFIG_FILE in msg


@pytest.mark.parametrize(("key", "value", "match"), [
    ("backbone.evil", 1, r"unknown key 'backbone.evil'; allowed keys: name_or_path, revision"),
    ("backbone.hidden_size", "16", r"backbone.hidden_size='16' has the wrong type; expected int"),
    ("backbone.is_seq2seq", 0, r"backbone.is_seq2seq=0 has the wrong type; expected bool"),
    ("backbone.name_or_path", DROP, r"'backbone' lacks the key 'name_or_path'"),
    ("backbone", ["tiny"], r"'backbone' must be an object, got list"),
], ids=["unknown-key", "str-for-int", "int-for-bool", "missing-key", "list-for-object"])
def test_b_backbone_with_unknown_missing_or_mistyped_keys_is_refused(saved, key, value, match):
    _tamper_json(saved, key, value)
    _refused(saved, match)


def test_b_backbone_without_the_later_keys_still_loads_but_an_extra_key_does_not(saved):
    _tamper_json(saved, "backbone.gguf", DROP)  # artifacts from before GGUF and quantisation were recorded
    _tamper_json(saved, "backbone.quantization", DROP)
    assert load_prompt(saved, INFO)[0].prompt.shape == (4, 16)
    _tamper_json(saved, "backbone.extra", None)
    _refused(saved, r"unknown key 'backbone.extra'")


@pytest.mark.parametrize("value", [["pt"], 3, {"name": "pt"}], ids=["list", "int", "object"])
def test_c_method_that_is_not_a_name_is_refused(saved, value):
    _tamper_json(saved, "method", value)
    _refused(saved, rf"'method' must be the name of a prompt method \(one of: .*pt\), got {type(value).__name__}")


def test_d_absurd_num_tokens_is_refused_before_anything_is_built(saved, monkeypatch):
    def build(*args, **kwargs):
        pytest.fail("a method was built for a config claiming a 10^12-token prompt")

    monkeypatch.setattr(methods, "build", build)
    _tamper_json(saved, "config.num_tokens", 10 ** 12)
    _refused(saved, r"config.num_tokens=1000000000000 is implausibly large; expected at most 16777216")


def test_d_config_shapes_are_compared_with_the_header_before_the_method_is_built(saved, tmp_path):
    """A prompt of 2^24 x 2^24 (4 PiB) by the config and the recorded backbone, 4 x 16 in the file: export_peft
    builds the method over the recorded backbone, so the old code allocated before comparing."""
    _tamper_json(saved, "config.num_tokens", 1 << 24)
    _tamper_json(saved, "backbone.hidden_size", 1 << 24)
    _refused(saved, r"prompt.safetensors holds tensors \{'prompt': \(4, 16\)\}; expected the shapes \{'prompt': "
             r"\(16777216, 16777216\)\} of method 'pt' as prompt_config.json configures it",
             lambda: export_peft(saved, tmp_path / "peft"))
    assert not (tmp_path / "peft").exists()


def _set_entry(**fields):
    return lambda header: header["prompt"].update(fields)


@pytest.mark.parametrize(("edit", "match"), [
    pytest.param(_set_entry(shape=[10 ** 12, 16]), r"tensor 'prompt' claims shape \[1000000000000, 16\] of F32 "
                 r"\(64000000000000 bytes\) but spans 256 bytes", id="huge-shape-small-data"),
    pytest.param(_set_entry(shape=[15625000000, 16], data_offsets=[0, 10 ** 12]), r"tensor 'prompt' has "
                 r"data_offsets \[0, 1000000000000\]; expected \[begin, end\] within the 256 data bytes",
                 id="offsets-past-the-file"),
    pytest.param(_set_entry(dtype="F128"), r"tensor 'prompt' has dtype 'F128'; expected one of BOOL", id="dtype"),
    pytest.param(_set_entry(shape=[-4, -16]), r"tensor 'prompt' has shape \[-4, -16\]; expected a list of "
                 r"non-negative", id="negative-shape"),
    pytest.param(_set_entry(shape=[2, 16], data_offsets=[0, 128]), r"its tensors cover 128 of the 256 data bytes",
                 id="data-left-over"),
    pytest.param(lambda h: h.update(extra={"dtype": "F32", "shape": [2, 16], "data_offsets": [0, 128]}),
                 r"tensor 'prompt' starts at byte 0; expected 128 \(contiguous, non-overlapping data\)",
                 id="overlapping"),
    pytest.param(lambda h: h["prompt"].pop("dtype"), r"tensor 'prompt' entry .*; expected the keys dtype, shape, "
                 r"data_offsets", id="entry-keys"),
])
def test_e_header_that_does_not_fit_the_file_is_refused_before_loading(saved, edit, match):
    _tamper_header(saved, edit)
    msg = _refused(saved, match)
    assert msg.startswith(f"{saved / TENSORS_FILE} is not a valid safetensors file: ")


def test_e_deeply_nested_header_is_refused(saved):
    raw = b"[" * 100_000 + b"]" * 100_000  # json.loads recurses once per level
    data = (saved / TENSORS_FILE).read_bytes()
    (saved / TENSORS_FILE).write_bytes(struct.pack("<Q", len(raw)) + raw + data[8 + struct.unpack("<Q", data[:8])[0]:])
    _rehash(saved)
    _refused(saved, r"prompt.safetensors is not a valid safetensors file: its header is not valid JSON")


@pytest.mark.parametrize("length", [1 << 60, (1 << 64) - 1, "file"], ids=["2^60", "2^64-1", "file-size+1"])
def test_f_absurd_header_length_is_refused_without_reading_it(saved, length):
    data = (saved / TENSORS_FILE).read_bytes()
    n = len(data) - 7 if length == "file" else length  # "file": one byte more than the file holds after it
    (saved / TENSORS_FILE).write_bytes(struct.pack("<Q", n) + data[8:])
    _rehash(saved)
    _refused(saved, rf"its header length is {n} bytes; expected at most the {len(data) - 8} bytes after it")


def test_f_file_shorter_than_the_header_length_is_refused(saved):
    (saved / TENSORS_FILE).write_bytes(b"\x01\x02")
    _rehash(saved)
    _refused(saved, r"prompt.safetensors is not a valid safetensors file: 2 bytes; expected at least an 8-byte")


@pytest.mark.parametrize(("key", "value", "match"), [
    ("task", 5, r"'task' must be a task name or definition, got int 5"),
    ("task", "nosuch", r"task='nosuch' is not a known task; expected one of: .*sst2"),
    ("config", [4], r"'config' must be an object, got list"),
    ("encoding", "12 tokens", r"'encoding' must be an object, got str"),
    ("encoding.max_length", "12", r"encoding.max_length='12' has the wrong type; expected int"),
    ("encoding.max_target_length", 0, r"encoding.max_target_length=0 is out of range; expected \[1, inf\]"),
    ("encoding.decoder_separator", 3, r"encoding.decoder_separator=3 has the wrong type; expected str"),
    ("encoding.pad_to", 8, r"unknown key 'encoding.pad_to'; allowed keys: max_length"),
    ("format_version", "1", r"'format_version' must be an integer from 1 to 1 .*, got str '1'"),
    ("format_version", 2, r"'format_version' must be an integer from 1 to 1 \(a later one: saved by a newer"),
    ("step", "5", r"'step' must be an integer or null, got str '5'"),
    ("metrics", [0.9], r"'metrics' must be an object or null, got list"),
    ("package_version", 1.0, r"'package_version' must be a string, got float"),
], ids=["task-int", "task-unknown", "config-list", "encoding-str", "encoding.max_length-str",
        "encoding.max_target_length-0", "encoding.decoder_separator-int", "encoding-unknown-key",
        "format_version-str", "format_version-newer", "step-str", "metrics-list", "package_version-float"])
def test_g_any_wrong_json_type_is_refused_in_one_line(saved, key, value, match):
    _tamper_json(saved, key, value)
    msg = _refused(saved, match)
    assert msg.startswith(f"{saved / CONFIG_FILE}: ")


def test_g_json_that_is_not_an_object_is_refused(saved):
    (saved / CONFIG_FILE).write_text("[1, 2]")
    _refused(saved, r"prompt_config.json: expected a JSON object, got list")


def test_g_deeply_nested_or_oversized_config_is_refused_without_a_traceback(saved):
    (saved / CONFIG_FILE).write_text("[" * 100_000 + "]" * 100_000)
    _refused(saved, r"prompt_config.json is not valid JSON \(maximum recursion depth")
    with open(saved / CONFIG_FILE, "r+b") as f:
        f.truncate(io.MAX_CONFIG_BYTES + 1)  # sparse: a 16 MiB file without writing 16 MiB
    _refused(saved, rf"prompt_config.json is {io.MAX_CONFIG_BYTES + 1} bytes; expected a small JSON file")


def test_g_recorded_dtype_and_quantization_must_be_backbone_settings(saved):
    """Checked before the backbone is loaded: the recorded id 'tiny' does not exist, so loading it would fail."""
    _tamper_json(saved, "backbone.dtype", "float128")
    _refused(saved, r"'backbone.dtype' must be one of \['float32', 'bfloat16', 'float16'\], got 'float128'",
             lambda: Predictor.load(saved))
    _tamper_json(saved, "backbone.dtype", "float32")
    _tamper_json(saved, "backbone.quantization", "int3")
    _refused(saved, r"'backbone.quantization' must be one of \['none', 'nf4', 'fp4', 'int8'\], got 'int3'",
             lambda: Predictor.load(saved))


@pytest.fixture
def servable(tiny_dirs, tmp_path):
    """A PT artifact over the tiny llama backbone on disk, as `promptfarm predict` loads it."""
    from pipeline.config import BackboneConfig
    from pipeline.model.backbone import load_backbone

    _, _, info = load_backbone(BackboneConfig(name_or_path=str(tiny_dirs["llama"])))
    cfg = PTConfig(num_tokens=3)
    save_prompt(tmp_path / "prompt", cfg, methods.build(cfg, info).state_dict(), info, "sst2",
                extra={"encoding": ENCODING})
    return tmp_path / "prompt"


@pytest.mark.parametrize(("command", "tamper", "match"), [
    ("predict", lambda d: _tamper_json(d, "tensors_sha256", 123), "'tensors_sha256' must be a 64-hex-digit string"),
    ("predict", lambda d: _tamper_json(d, "config.num_tokens", 10 ** 12), "config.num_tokens=1000000000000 is "),
    ("predict", lambda d: _tamper_header(d, _set_entry(shape=[10 ** 12, 32])), "claims shape [1000000000000, 32]"),
    ("export-peft", lambda d: (_tamper_json(d, "config.num_tokens", 1 << 24),
                               _tamper_json(d, "backbone.hidden_size", 1 << 24)), "shapes {'prompt': (16777216, "),
], ids=["predict-sha256-int", "predict-num_tokens-1e12", "predict-header-huge-shape", "export-peft-shapes"])
def test_cli_refuses_a_tampered_artifact_in_one_line_exit_2(servable, tmp_path, command, tamper, match):
    tamper(servable)
    args = [servable, "a gripping, funny film"] if command == "predict" else [servable, tmp_path / "peft"]
    proc = subprocess.run([sys.executable, "-m", "pipeline.cli", command, *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(servable) in lines[0], proc.stderr[-2000:]
    assert match in lines[0]


def test_g_a_key_given_twice_in_the_config_or_the_tensor_header_is_refused(saved):
    """json.loads keeps the last of two same-named keys: a tamperer's second 'method' would win silently."""
    text = (saved / CONFIG_FILE).read_text()
    (saved / CONFIG_FILE).write_text(text.replace('{', '{"step": 1, "step": 2, ', 1))
    _refused(saved, r"prompt_config.json is not valid JSON \(key 'step' appears twice in one object")
    data = (saved / TENSORS_FILE).read_bytes()
    n = struct.unpack("<Q", data[:8])[0]
    entry = json.dumps(json.loads(data[8: 8 + n])["prompt"])
    raw = data[8: 8 + n].replace(b'"prompt":', f'"prompt": {entry}, "prompt":'.encode(), 1)
    (saved / TENSORS_FILE).write_bytes(struct.pack("<Q", len(raw)) + raw + data[8 + n:])
    _rehash(saved)
    _refused(saved, r"prompt.safetensors is not a valid safetensors file: its header is not valid: key 'prompt' "
                    r"appears twice")


@pytest.mark.parametrize(("edit", "match"), [
    pytest.param(lambda t: t.half(), r"tensor 'prompt' is F16; expected F32, the dtype the method saves", id="f16"),
    pytest.param(lambda t: t.int(), r"tensor 'prompt' is I32; expected F32", id="i32"),
    pytest.param(lambda t: t.bool(), r"tensor 'prompt' is BOOL; expected F32", id="bool"),
])
def test_h_a_header_claiming_another_dtype_is_refused_before_loading(saved, edit, match):
    """A self-consistent file (header, hash) that load_state_dict would cast to float32 without a word."""
    _resave(saved, edit)
    _refused(saved, match)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -1e38])
def test_h_stored_values_must_be_finite_and_plausible(saved, value):
    """NaN weights predict one label for every input; 1e38 overflows the forward. Values are read to be checked,
    so this is the one refusal after safetensors' loader (the header and shapes passed)."""
    _resave(saved, lambda t: torch.full_like(t, value))
    before = {p.name: p.read_bytes() for p in saved.iterdir()}
    with pytest.raises(PromptArtifactError, match=r"tensor 'prompt' holds NaN, infinite or absurd values "
                                                  r"\(beyond 10000\); expected trained prompt weights"):
        load_prompt(saved, INFO)
    assert {p.name: p.read_bytes() for p in saved.iterdir()} == before


def _resave(d, edit) -> None:
    """Write the artifact's tensors again through `edit`, as a tamperer would (valid header), and rehash."""
    from safetensors.torch import load_file, save_file

    state = load_file(str(d / TENSORS_FILE))
    save_file({k: edit(v).contiguous() for k, v in state.items()}, str(d / TENSORS_FILE))
    _rehash(d)


def test_h_a_recorded_separator_is_bounded(saved):
    _tamper_json(saved, "encoding.decoder_separator", "x" * 300)
    _refused(saved, r"encoding.decoder_separator is 300 characters long; expected at most 256")
