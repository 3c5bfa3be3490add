"""A hub-id backbone that is neither local nor cached fails pre-flight in one line when the hub is offline or down."""

from __future__ import annotations

import json

import pytest
from huggingface_hub import constants

import pipeline.model.backbone
from pipeline.config import BackboneConfig
from pipeline.preflight import PreflightError, check_backbone
from tests.unit.test_preflight import closed_port, fails, home  # noqa: F401  (home: the CLI fixture)

FAKE = "promptfarm-tests/no-such-model"


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty Hugging Face cache, a backbone loader that must not be reached, and no proxy for loopback."""
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY"):
        monkeypatch.delenv(var, raising=False)

    def no_loading(*args, **kwargs):
        raise AssertionError("transformers was asked to load the backbone")

    monkeypatch.setattr(pipeline.model.backbone, "load_hf_config", no_loading)
    return tmp_path / "hub"


def test_uncached_hub_id_offline_is_one_line_without_loading(cache):
    with pytest.raises(PreflightError) as e:
        check_backbone(BackboneConfig(name_or_path=FAKE))
    assert str(e.value) == (
        f"backbone '{FAKE}' is not a local directory and not in the Hugging Face cache ({cache}), and the hub is "
        "offline (HF_HUB_OFFLINE=1); expected a local model directory, a hub id already downloaded into that cache, "
        "or access to the hub")


def test_unreachable_hub_is_one_bounded_probe_without_loading(cache, monkeypatch):
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    endpoint = f"http://127.0.0.1:{closed_port()}"  # nothing listens: refused at once, no network reached
    monkeypatch.setattr(constants, "ENDPOINT", endpoint)
    with pytest.raises(PreflightError, match=rf"^backbone '{FAKE}@v2' is not a local directory and not in the "
                                             rf"Hugging Face cache \(.*\), and the hub {endpoint} is not reachable "
                                             r"\(.*Connection refused; 3 s timeout\); expected"):
        check_backbone(BackboneConfig(name_or_path=FAKE, revision="v2"))


def test_a_hub_that_answers_goes_on_to_load_the_config(cache, monkeypatch):
    """Online users keep hub loading: one answer from the hub (any status) and transformers takes over."""
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    class Hub(BaseHTTPRequestHandler):
        def do_HEAD(self):  # the name http.server calls
            self.send_response(401)  # a gated repo without a token still answers
            self.end_headers()

        def log_message(self, *args):
            pass

    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    server = HTTPServer(("127.0.0.1", 0), Hub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{server.server_address[1]}")
    loaded = []
    monkeypatch.setattr(pipeline.model.backbone, "load_hf_config", lambda b, *a: loaded.append(b.name_or_path))
    try:
        check_backbone(BackboneConfig(name_or_path=FAKE))
    finally:
        server.shutdown()
        server.server_close()
    assert loaded == [FAKE]


def test_an_invalid_id_that_is_no_directory_is_one_line(cache):
    with pytest.raises(PreflightError, match=r"^backbone.name_or_path='models/a/b' is not a local directory \(.*"
                                             r"models/a/b' not found\) nor a Hugging Face hub id \(Repo id must"):
        check_backbone(BackboneConfig(name_or_path="models/a/b"))


def test_a_cached_hub_id_still_loads_offline(tmp_path, monkeypatch):
    """The check only looks in the cache: a hub id downloaded before loads as it always did (transformers reads it)."""
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    repo = tmp_path / "hub" / "models--promptfarm-tests--cached"
    (repo / "snapshots" / "abc123").mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123")
    (repo / "snapshots" / "abc123" / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": 48,
                                                                                "num_attention_heads": 4}))
    check_backbone(BackboneConfig(name_or_path="promptfarm-tests/cached"))
    cached = BackboneConfig(name_or_path="promptfarm-tests/cached")
    assert pipeline.model.backbone.load_hf_config(cached).hidden_size == 48


def test_cli_bench_with_an_uncached_hub_id_fails_in_one_line(home, cache):  # noqa: F811  (the imported fixture)
    (home / "bench.yaml").write_text(f"backbone: {{name_or_path: {FAKE}}}\n")
    fails(["bench", "bench.yaml"], f"backbone '{FAKE}' is not a local directory and not in the Hugging Face cache",
          "the hub is offline (HF_HUB_OFFLINE=1)")


def test_a_config_transformers_refuses_is_one_line(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": 48}))  # 32 heads
    with pytest.raises(PreflightError, match=r"^backbone '.*/m' does not load as a model config: The hidden size "
                                             r"\(48\) is not a multiple of the number of attention heads \(32\)"):
        check_backbone(BackboneConfig(name_or_path=str(tmp_path / "m")))
