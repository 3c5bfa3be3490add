"""Prompt artifacts: `prompt_config.json` + `prompt.safetensors`, nothing else, never pickle.

The JSON records the method and its config, the backbone (id, revision, architecture), the task and the
package version, plus the SHA-256 of the tensor file so a truncated or altered artifact is refused with a
one-line error instead of loading garbage. Files are written to a temporary name and renamed into place, so
an interrupted save never leaves a half-written artifact over a good one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from pipeline import __version__, methods
from pipeline.methods.base import BackboneInfo
from pipeline.schema import ConfigError, build_dataclass

CONFIG_FILE = "prompt_config.json"
TENSORS_FILE = "prompt.safetensors"
FORMAT_VERSION = 1
ARTIFACT_MODE = 0o644  # readable by the group and others like any model file, whatever writes it


class PromptArtifactError(ValueError):
    """A prompt directory is missing, corrupt, or does not fit the backbone it is loaded onto."""


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks (~0.3 s for a 98 MB GGUF file)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_prompt(out_dir: str | Path, method_cfg: Any, state: dict[str, torch.Tensor], info: BackboneInfo,
                task: str, extra: dict | None = None) -> Path:
    """Write a prompt artifact to `out_dir` from a (gathered, full) `state` dict of the method's tensors."""
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
        "task": task,
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
    """Parse and validate prompt_config.json of `prompt_dir` (method known, config valid, tensors intact)."""
    d = Path(prompt_dir)
    cfg_path, tensors_path = d / CONFIG_FILE, d / TENSORS_FILE
    for p in (cfg_path, tensors_path):
        if not p.is_file():
            raise PromptArtifactError(
                f"prompt artifact {str(d)!r} lacks {p.name}; expected {CONFIG_FILE} and {TENSORS_FILE}")
    try:
        meta = json.loads(cfg_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise PromptArtifactError(f"{cfg_path} is not valid JSON ({e.msg if hasattr(e, 'msg') else e})") from None
    for key in ("method", "config", "backbone", "task", "tensors_sha256"):
        if key not in meta:
            raise PromptArtifactError(f"{cfg_path} lacks the key {key!r}")
    try:
        methods.get(meta["method"])
    except ValueError as e:
        raise PromptArtifactError(f"{cfg_path}: {e}") from None
    digest = file_sha256(tensors_path)
    if digest != meta["tensors_sha256"]:
        raise PromptArtifactError(
            f"{tensors_path} is corrupt or truncated: sha256 {digest[:12]}… != recorded {meta['tensors_sha256'][:12]}…")
    return meta


def method_config_from_meta(meta: dict) -> Any:
    """The method's config dataclass rebuilt (and validated) from prompt_config.json."""
    try:
        return build_dataclass(methods.config_class(meta["method"]), meta["config"], "config.")
    except ConfigError as e:
        raise PromptArtifactError(f"prompt_config.json of method {meta['method']!r}: {e}") from None


def load_prompt(prompt_dir: str | Path, info: BackboneInfo, meta: dict | None = None) -> tuple[torch.nn.Module, dict]:
    """Rebuild the method from `prompt_dir` onto a backbone described by `info`; refuse a mismatching backbone.

    `meta`: the artifact's already validated `read_prompt_meta` result, so callers that read it first (to pick
    the backbone) do not hash the tensors twice.
    """
    meta = meta or read_prompt_meta(prompt_dir)
    recorded = BackboneInfo(**meta["backbone"])
    why = recorded.mismatch(info)
    if why:
        raise PromptArtifactError(
            f"backbone mismatch: prompt in {str(prompt_dir)!r} was trained on {recorded.name_or_path!r}; "
            f"the loaded backbone {info.name_or_path!r} has {why}")
    if recorded.quantization != info.quantization:  # same architecture: the prompt transfers
        logging.getLogger("promptfarm").warning(
            f"prompt in {str(prompt_dir)!r} was trained over a backbone quantised {recorded.quantization!r}; loading "
            f"it over one quantised {info.quantization!r} (same architecture; scores may differ slightly)")
    method = methods.build(method_config_from_meta(meta), info)
    state = load_file(str(Path(prompt_dir) / TENSORS_FILE))
    expected = {k: tuple(v.shape) for k, v in method.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in state.items()}
    if expected != got:
        raise PromptArtifactError(
            f"{prompt_dir}: tensors {got} do not match method {meta['method']!r} shapes {expected}")
    method.load_state_dict(state)
    return method, meta
