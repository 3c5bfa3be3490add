"""Prompt artifacts: `prompt_config.json` + `prompt.safetensors`, nothing else, never pickle.

The JSON records the method and its config, the backbone (id, revision, architecture, dtype), the task's whole
definition (template, label words, decoding settings, metrics: pipeline.data.tasks.Task), the encoding
(pipeline.data.encode.Encoding) and the package version, plus the SHA-256 of the tensor file so a truncated or
altered artifact is refused with a one-line error instead of loading garbage. Files are written to a temporary
name and renamed into place, so an interrupted save never leaves a half-written artifact over a good one.

Loading trusts nothing in either file: the JSON's structure is checked key by key, the safetensors header is
checked against the file's real size, and the tensor shapes the recorded config implies are compared with that
header before the method is built, so nothing is allocated in proportion to what a (tampered) file claims.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from pipeline import __version__, methods
from pipeline.data.builtin import task_from
from pipeline.data.encode import Encoding
from pipeline.data.tasks import Task
from pipeline.digest import file_sha256
from pipeline.methods.base import BackboneInfo
from pipeline.safetensors_header import Header, HeaderError, read_header
from pipeline.schema import ConfigError, build_dataclass, loads_unique

CONFIG_FILE = "prompt_config.json"
TENSORS_FILE = "prompt.safetensors"
FORMAT_VERSION = 1
ARTIFACT_MODE = 0o644  # readable by the group and others like any model file, whatever writes it
MAX_CONFIG_BYTES = 16 << 20  # a real prompt_config.json is ~1 KB; refuse to parse anything near memory-sized
# Every integer an artifact records (prompt lengths, ranks, backbone widths) is far below this; a larger one is
# tampering, refused before any config is built (LAMP's config check loops over the divisors of num_tokens).
MAX_RECORDED_INT = 1 << 24
_SHA256 = re.compile(r"[0-9a-f]{64}")
# What a prompt trained before its artifact recorded an encoding was tokenised with (the loaders' old constants).
LEGACY_ENCODING = Encoding(max_length=256, max_target_length=8, decoder_separator="")
# Older artifacts record the backbone's dtype (a string) in their `encoding`; it now sits in `backbone`.
_LEGACY_DTYPE = "dtype"
_DTYPE_CODE = {torch.float32: "F32", torch.float64: "F64", torch.float16: "F16", torch.bfloat16: "BF16",
               torch.int64: "I64", torch.int32: "I32", torch.bool: "BOOL"}  # torch dtype -> safetensors code


# Largest |value| a stored prompt tensor may hold. Adam moves a weight by about lr per step, so thousands of steps
# at lr <= 1 stay far below; embeddings are O(0.01-1). A bigger value is a corrupt or hostile file.
MAX_ABS_WEIGHT = 1e4


class PromptArtifactError(ValueError):
    """A prompt directory is missing, corrupt, or does not fit the backbone it is loaded onto."""


def save_prompt(out_dir: str | Path, method_cfg: Any, state: dict[str, torch.Tensor], info: BackboneInfo,
                task: Task | str, encoding: Encoding | None = None, extra: dict | None = None) -> Path:
    """Write a prompt artifact to `out_dir` from a (gathered, full) `state` dict of the method's tensors, with the
    task definition (or a built-in task's name) and encoding (None: the defaults) it was trained with."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state.items()}
    tmp = out / (TENSORS_FILE + ".tmp")
    save_file(tensors, str(tmp), metadata={"format": "pt"})
    tmp.chmod(ARTIFACT_MODE)  # safetensors writes 0600; both files of an artifact share one mode
    os.replace(tmp, out / TENSORS_FILE)
    meta = {
        "format_version": FORMAT_VERSION,
        "method": methods.name_of(method_cfg),
        "config": dataclasses.asdict(method_cfg),
        "backbone": info.to_dict(),
        "task": task_from(task, "task").to_dict(),
        "encoding": (encoding or Encoding()).to_dict(),
        "package_version": __version__,
        "tensors_sha256": file_sha256(out / TENSORS_FILE),
        **(extra or {}),
    }
    tmp = out / (CONFIG_FILE + ".tmp")
    tmp.write_text(json.dumps(meta, indent=2, sort_keys=True))
    tmp.chmod(ARTIFACT_MODE)
    os.replace(tmp, out / CONFIG_FILE)
    return out


def read_prompt_meta(prompt_dir: str | Path) -> dict:
    """Parse and validate prompt_config.json of `prompt_dir` (structure, method, task, config, tensors intact and
    of the shapes the config implies)."""
    d = Path(prompt_dir)
    cfg_path, tensors_path = d / CONFIG_FILE, d / TENSORS_FILE
    for p in (cfg_path, tensors_path):
        if not p.is_file():
            raise PromptArtifactError(
                f"prompt artifact {str(d)!r} lacks {p.name}; expected {CONFIG_FILE} and {TENSORS_FILE}")
    size = cfg_path.stat().st_size
    if size > MAX_CONFIG_BYTES:
        raise PromptArtifactError(f"{cfg_path} is {size} bytes; expected a small JSON file (<= {MAX_CONFIG_BYTES})")
    try:
        meta = loads_unique(cfg_path.read_text())
    except (ValueError, RecursionError) as e:  # bad JSON, a repeated key, not UTF-8; RecursionError: absurdly nested
        raise PromptArtifactError(f"{cfg_path} is not valid JSON ({getattr(e, 'msg', None) or e})") from None
    _check_meta(meta, cfg_path)
    digest = file_sha256(tensors_path)
    if digest != meta["tensors_sha256"]:
        raise PromptArtifactError(
            f"{tensors_path} is corrupt or truncated: sha256 {digest[:12]}… != recorded {meta['tensors_sha256'][:12]}…")
    # A tamperer can recompute the hash too: the header and the config are checked on their own, against the
    # recorded backbone (same shapes as any backbone the prompt loads onto), before a caller loads that backbone.
    _checked_config(meta, recorded_backbone(meta["backbone"], cfg_path), d)
    return meta


def _type(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_meta(meta: Any, cfg_path: Path) -> None:
    """One-line PromptArtifactError unless every key the loaders read has the type (and range) they expect.
    Other top-level keys are `save_prompt` extras and pass through."""
    def bad(key: str, expected: str, value: Any) -> PromptArtifactError:
        return PromptArtifactError(f"{cfg_path}: {key!r} must be {expected}, got {_type(value)} {value!r:.60}")

    if not isinstance(meta, dict):
        raise PromptArtifactError(f"{cfg_path}: expected a JSON object, got {_type(meta)}")
    for key in ("method", "config", "backbone", "task", "tensors_sha256"):
        if key not in meta:
            raise PromptArtifactError(f"{cfg_path} lacks the key {key!r}")
    version = meta.get("format_version", FORMAT_VERSION)
    if not _is_int(version) or not 1 <= version <= FORMAT_VERSION:
        raise bad("format_version", f"an integer from 1 to {FORMAT_VERSION} (a later one: saved by a newer "
                  f"promptfarm)", version)
    if not isinstance(meta["tensors_sha256"], str) or not _SHA256.fullmatch(meta["tensors_sha256"]):
        raise bad("tensors_sha256", "a 64-hex-digit string", meta["tensors_sha256"])
    for key, tp, expected in (("method", str, f"the name of a prompt method (one of: {', '.join(methods.names())})"),
                              ("task", str | dict, "a task name or definition"), ("config", dict, "an object"),
                              ("encoding", dict, "an object"), ("metrics", dict | None, "an object or null"),
                              ("step", int | None, "an integer or null"), ("package_version", str, "a string")):
        if key in meta and (not isinstance(meta[key], tp) or isinstance(meta[key], bool)):
            raise bad(key, expected, meta[key])
    try:
        methods.get(meta["method"])
        recorded_task(meta)  # before a caller loads the backbone the task is scored on
    except ValueError as e:
        raise PromptArtifactError(f"{cfg_path}: {e}") from None
    recorded_backbone(meta["backbone"], cfg_path)
    recorded_encoding(meta, cfg_path)


def recorded_task(meta: dict) -> Task:
    """The task the prompt was trained on: its recorded definition (older artifacts: a built-in task's name)."""
    task = task_from(meta["task"], "task")
    if task.needs_labels:
        raise ConfigError(f"task {task.name!r} records no label set; expected its label words")
    return task


def recorded_encoding(meta: dict, cfg_path: Path | str = CONFIG_FILE) -> Encoding:
    """The recorded `encoding` as an Encoding (each key of its type and range; an older artifact's `dtype` key is
    allowed); an artifact that records none gets LEGACY_ENCODING."""
    if "encoding" not in meta:
        return LEGACY_ENCODING
    raw = dict(meta["encoding"])
    if not isinstance(raw.pop(_LEGACY_DTYPE, ""), str):
        raise PromptArtifactError(f"{cfg_path}: 'encoding.dtype' must be a string, got "
                                  f"{_type(meta['encoding']['dtype'])}")
    _check_ints(raw, "encoding.", cfg_path)
    try:  # keys, types and ranges as the config checks them; the legacy separator was "" (none)
        return build_dataclass(Encoding, {"decoder_separator": "", **raw}, "encoding.")
    except ConfigError as e:
        raise PromptArtifactError(f"{cfg_path}: {e}") from None


def _check_ints(raw: dict, prefix: str, cfg_path: Path | str) -> None:
    """Refuse a recorded integer above MAX_RECORDED_INT before anything is sized (or looped over) by it."""
    for key, value in raw.items():
        if _is_int(value) and value > MAX_RECORDED_INT:
            raise PromptArtifactError(f"{cfg_path}: {prefix}{key}={value} is implausibly large; expected at most "
                                      f"{MAX_RECORDED_INT}")


def recorded_backbone(raw: Any, cfg_path: Path | str = CONFIG_FILE) -> BackboneInfo:
    """The recorded `backbone` object as a BackboneInfo: exactly its fields (gguf and quantization optional, as
    older artifacts lack them), each of its type, sizes in [1, MAX_RECORDED_INT]."""
    fields = dataclasses.fields(BackboneInfo)
    if not isinstance(raw, dict):
        raise PromptArtifactError(f"{cfg_path}: 'backbone' must be an object, got {_type(raw)}")
    missing = [f.name for f in fields if f.default is dataclasses.MISSING and f.name not in raw]
    if missing:
        raise PromptArtifactError(f"{cfg_path}: 'backbone' lacks the key {missing[0]!r}; expected the keys "
                                  f"{', '.join(f.name for f in fields)}")
    try:
        info = build_dataclass(BackboneInfo, raw, "backbone.")
    except ConfigError as e:
        raise PromptArtifactError(f"{cfg_path}: {e}") from None
    for key in ("hidden_size", "vocab_size", "num_layers"):
        if not 1 <= getattr(info, key) <= MAX_RECORDED_INT:
            raise PromptArtifactError(f"{cfg_path}: backbone.{key}={getattr(info, key)} is out of range; expected "
                                      f"[1, {MAX_RECORDED_INT}]")
    return info


def method_config_from_meta(meta: dict, where: str | Path = CONFIG_FILE) -> Any:
    """The method's config dataclass rebuilt (and validated) from prompt_config.json (`where`, for messages)."""
    if isinstance(meta["config"], dict):
        _check_ints(meta["config"], "config.", where)
    try:
        return build_dataclass(methods.config_class(meta["method"]), meta["config"], "config.")
    except ConfigError as e:
        raise PromptArtifactError(f"{where} of method {meta['method']!r}: {e}") from None


def expected_header(cfg: Any, info: BackboneInfo, where: str | Path = CONFIG_FILE) -> Header:
    """Tensor name -> (shape, dtype code) the method configured by `cfg` holds over `info`, from a build on the meta
    device (no storage: a config claiming a huge prompt allocates nothing here)."""
    try:
        with torch.device("meta"):
            module = methods.build(cfg, info)
    except (ValueError, RuntimeError) as e:  # e.g. LAMP's rank above min(num_tokens, hidden_size)
        raise PromptArtifactError(f"{where} of method {methods.name_of(cfg)!r}: {str(e).splitlines()[0]}") from None
    return {k: (tuple(v.shape), _DTYPE_CODE.get(v.dtype, str(v.dtype))) for k, v in module.state_dict().items()}


def _checked_config(meta: dict, info: BackboneInfo, prompt_dir: str | Path) -> Any:
    """The recorded method config, once the tensor shapes it implies over `info` equal those of the header."""
    cfg_path = Path(prompt_dir) / CONFIG_FILE
    cfg = method_config_from_meta(meta, cfg_path)
    # Compared before anything real is built: the header was checked against the file size, so once the shapes
    # agree the method allocates no more than the file actually holds.
    tensors_path = Path(prompt_dir) / TENSORS_FILE
    try:
        got = read_header(tensors_path)
    except HeaderError as e:
        raise PromptArtifactError(str(e)) from None
    expected = expected_header(cfg, info, cfg_path)
    shapes, want = {k: v[0] for k, v in got.items()}, {k: v[0] for k, v in expected.items()}
    if shapes != want:
        raise PromptArtifactError(f"{tensors_path} holds tensors {str(shapes)[:200]}; expected the shapes "
                                  f"{str(want)[:200]} of method {meta['method']!r} as {CONFIG_FILE} configures it")
    for name, (_, dtype) in got.items():  # load_state_dict would cast F16/I32/BOOL values silently
        if dtype != expected[name][1]:
            raise PromptArtifactError(f"{tensors_path}: tensor {name!r} is {dtype}; expected {expected[name][1]}, "
                                      "the dtype the method saves")
    return cfg


def load_prompt(prompt_dir: str | Path, info: BackboneInfo, meta: dict | None = None) -> tuple[torch.nn.Module, dict]:
    """Rebuild the method from `prompt_dir` onto a backbone described by `info`; refuse a mismatching backbone.

    `meta`: the artifact's already validated `read_prompt_meta` result, so callers that read it first (to pick
    the backbone) do not hash the tensors twice.
    """
    meta = meta or read_prompt_meta(prompt_dir)
    recorded = recorded_backbone(meta["backbone"], Path(prompt_dir) / CONFIG_FILE)
    why = recorded.mismatch(info)
    if why:
        raise PromptArtifactError(
            f"backbone mismatch: prompt in {str(prompt_dir)!r} was trained on {recorded.name_or_path!r}; "
            f"the loaded backbone {info.name_or_path!r} has {why}")
    if recorded.quantization != info.quantization:  # same architecture: the prompt transfers
        logging.getLogger("promptfarm").warning(
            f"prompt in {str(prompt_dir)!r} was trained over a backbone quantised {recorded.quantization!r}; loading "
            f"it over one quantised {info.quantization!r} (same architecture; scores may differ slightly)")
    method = methods.build(_checked_config(meta, info, prompt_dir), info)  # sized as the checked header
    tensors_path = Path(prompt_dir) / TENSORS_FILE
    try:
        state = load_file(str(tensors_path))
    except SafetensorError as e:  # anything safetensors checks beyond the header checks above
        raise PromptArtifactError(f"{tensors_path} is not a valid safetensors file: {e}") from None
    _check_values(state, tensors_path)
    method.load_state_dict(state)
    return method, meta


def _check_values(state: dict[str, torch.Tensor], path: Path) -> None:
    """Finite values of plausible size: an all-NaN prompt predicts one label for everything, 1e38 overflows the
    forward."""
    for name, tensor in state.items():
        if tensor.is_floating_point() and not bool(tensor.abs().le(MAX_ABS_WEIGHT).all()):  # NaN fails le too
            raise PromptArtifactError(f"{path}: tensor {name!r} holds NaN, infinite or absurd values (beyond "
                                      f"{MAX_ABS_WEIGHT:g}); expected trained prompt weights")
