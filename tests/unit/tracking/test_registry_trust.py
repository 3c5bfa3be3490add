"""Registry trust: tampered tags never move `champion`, pulls pin a version + digest, never write through links."""

from __future__ import annotations

import hashlib
import logging

import pytest
from typer.testing import CliRunner

from pipeline.artifact import CONFIG_FILE, TENSORS_FILE, read_prompt_meta
from pipeline.cli import app
from pipeline.tracking.registry import CHAMPION, pull, register_prompt
from tests.unit.tracking.test_registry import make_store


@pytest.fixture
def store(tmp_path, backbones):
    """A sqlite MLflow store and a factory of trial runs holding a real PT prompt for the tiny llama."""
    return make_store(tmp_path, backbones)


def _reg_loss(client, run_id: str, loss: float, search_id: str, name: str = "m"):
    """Register as a search minimising val_loss does: the trial run logged the value first."""
    client.log_metric(run_id, "val_loss", loss)
    return register_prompt(client, name, run_id, "val_loss", loss, "min", {"search_id": search_id}, "d")


def _champion(client, name: str = "m") -> str:
    return str(client.get_model_version_by_alias(name, CHAMPION).version)


@pytest.mark.parametrize("tag", ["-1e9", "abc", "nan"])
def test_a_tampered_metric_value_tag_neither_wins_blocks_nor_breaks_registration(store, tag, caplog):
    _, client, make_run = store
    assert _reg_loss(client, make_run(1), 0.6, "s1") == ("1", True)
    assert _reg_loss(client, make_run(2), 0.5, "s2") == ("2", True)
    for version in ("1", "2"):  # anyone with registry write access can set tags, the champion's included
        client.set_model_version_tag("m", version, "metric_value", tag)
    with caplog.at_level(logging.WARNING, logger="promptfarm"):
        assert _reg_loss(client, make_run(3), 0.55, "s3") == (None, False)  # the champion's logged 0.5 still holds
        assert _reg_loss(client, make_run(4), 0.4, "s4") == ("3", True)  # a real improvement still registers
    assert _champion(client) == "3"
    assert any(f"metric_value={tag!r}" in r.getMessage() for r in caplog.records)


def test_a_version_whose_run_logged_nothing_is_never_champion(store, caplog):
    _, client, make_run = store
    assert _reg_loss(client, make_run(1), 0.6, "s1") == ("1", True)
    forged = make_run(2)  # a version added by hand, claiming a value its run never logged
    client.create_model_version("m", source=f"runs:/{forged}/prompt", run_id=forged,
                                tags={"metric": "val_loss", "metric_value": "0.01", "mode": "min"})
    with caplog.at_level(logging.WARNING, logger="promptfarm"):
        assert _reg_loss(client, make_run(3), 0.5, "s3") == ("3", True)
    assert _champion(client) == "3"
    assert [r.getMessage() for r in caplog.records if "version 2" in r.getMessage()] == [
        f"m version 2: its run {forged!r} logged no finite val_loss; ignored when choosing the champion"]


def test_registering_a_value_the_run_never_logged_is_refused(store):
    _, client, make_run = store
    with pytest.raises(ValueError, match="logged no finite val_loss"):
        register_prompt(client, "m", make_run(1), "val_loss", 0.1, "min", {"search_id": "s"}, "d")


def test_names_with_quotes_register_once_per_search_and_pull(store, tmp_path):
    uri, client, make_run = store
    run = make_run(1)
    assert _reg_loss(client, run, 0.6, "s1", name="it's") == ("1", True)
    assert _reg_loss(client, run, 0.6, "s1", name="it's") == ("1", True)  # found again through the filter
    assert read_prompt_meta(pull("it's", tmp_path / "p", tracking_uri=uri))["method"] == "pt"

    from pipeline.tracking.runs import filter_literal

    with pytest.raises(ValueError, match="holds both ' and \""):  # one line, not an MLflow parse error
        filter_literal("a'b\"c")


def _pull(uri: str, out, *args: str):
    return CliRunner().invoke(app, ["pull", "m", "--out", str(out), "--tracking-uri", uri, *args])


def test_pull_prints_the_digest_and_a_pinned_pull_checks_it(store, tmp_path):
    uri, client, make_run = store
    _reg_loss(client, make_run(1), 0.6, "s1")
    first = _pull(uri, tmp_path / "a")
    assert first.exit_code == 0, first.output
    digest = hashlib.sha256((tmp_path / "a" / CONFIG_FILE).read_bytes()).hexdigest()
    assert f"version 1 sha256 {digest}" in first.stdout

    pinned = _pull(uri, tmp_path / "b", "--version", "1", "--sha256", digest.upper())
    assert pinned.exit_code == 0, pinned.output
    assert (tmp_path / "b" / TENSORS_FILE).read_bytes() == (tmp_path / "a" / TENSORS_FILE).read_bytes()

    keep = tmp_path / "keep"
    keep.mkdir()
    (keep / CONFIG_FILE).write_text("{}")
    (keep / TENSORS_FILE).write_bytes(b"old")
    wrong = _pull(uri, keep, "--version", "1", "--sha256", "0" * 64)
    assert wrong.exit_code == 2
    errors = [line for line in wrong.stderr.splitlines() if line.startswith("error:")]  # MLflow's bars aside
    assert len(errors) == 1 and errors[0].startswith("error: m version 1 has prompt digest ") and \
        f"not the pinned {'0' * 64}; nothing written to" in errors[0]
    assert (keep / CONFIG_FILE).read_text() == "{}" and (keep / TENSORS_FILE).read_bytes() == b"old"
    assert {p.name for p in keep.iterdir()} == {CONFIG_FILE, TENSORS_FILE}  # no temporary left behind


def test_pull_replaces_symlinks_in_out_instead_of_writing_through_them(store, tmp_path):
    uri, client, make_run = store
    _reg_loss(client, make_run(1), 0.6, "s1")
    outside = {f: tmp_path / f"outside-{f}" for f in (CONFIG_FILE, TENSORS_FILE)}
    out = tmp_path / "out"
    out.mkdir()
    for f, target in outside.items():
        target.write_bytes(b"not yours")
        (out / f).symlink_to(target)
    pull("m", out, tracking_uri=uri)
    assert all(target.read_bytes() == b"not yours" for target in outside.values())
    assert not any((out / f).is_symlink() for f in outside)
    assert read_prompt_meta(out)["method"] == "pt"


def test_a_version_whose_source_is_a_local_path_outside_the_store_is_refused_before_reading(store, tmp_path):
    """A sqlite registry accepts source='file:///etc'; pull copied that directory before refusing it."""
    _, client, make_run = store
    secret = tmp_path / "elsewhere"
    secret.mkdir()
    (secret / "private.key").write_text("k")
    real = make_run(1)
    import shutil

    shutil.copytree(tmp_path / "prompt-1", secret, dirs_exist_ok=True)  # even a valid prompt there is not pulled
    client.create_registered_model("m")
    client.create_model_version("m", source=secret.as_uri(), run_id=real)
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=r"m version 1 has source 'file://.*elsewhere', outside this tracking "
                                         r"store's artifacts; expected a prompt registered by promptfarm"):
        pull("m", out, version="1", tracking_uri=store[0])
    assert not out.exists()


def test_a_pull_downloads_only_the_two_prompt_files(store, tmp_path, monkeypatch):
    """Whatever else sits beside the prompt (here a notes file; in an attack, a whole directory) is never read."""
    import mlflow

    uri, client, make_run = store
    run = make_run(1)
    client.log_text(run, "not a prompt file", "prompt/notes.txt")
    asked, real = [], mlflow.artifacts.download_artifacts

    def spy(**kw):
        asked.append(kw["artifact_uri"])
        return real(**kw)

    monkeypatch.setattr(mlflow.artifacts, "download_artifacts", spy)
    out = pull(f"runs:/{run}/prompt", tmp_path / "out", tracking_uri=uri)
    assert sorted(p.name for p in out.iterdir()) == sorted([CONFIG_FILE, TENSORS_FILE])
    assert sorted(asked) == sorted(f"runs:/{run}/prompt/{f}" for f in (CONFIG_FILE, TENSORS_FILE))
