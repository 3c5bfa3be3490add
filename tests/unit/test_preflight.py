"""Pre-flight and the front door: every locally checkable mistake fails in the user's process, before Ray, in
seconds, as one `error: ...` line on stderr with a non-zero exit, and writes nothing to the tracking store."""

from __future__ import annotations

import re
import shutil
import socket
import stat
import sys

import pytest
import yaml
from typer.testing import CliRunner

from pipeline.cli import app
from tests.conftest import FIXTURES, ROOT

SMOKE = ROOT / "jobs" / "configs" / "smoke.yaml"
# A Ray cluster that an earlier test left up in this pytest process echoes its workers' log lines, prefixed
# "(NAME pid=N)" and maybe coloured, to whatever sys.stderr is when they arrive, CliRunner's capture included.
# Those lines are not the CLI's output.
RAY_ECHO = re.compile(r"^(\x1b\[[0-9;]*m)?\([^()]*pid=\d+")


def closed_port() -> int:
    """A loopback port with nothing listening (bound once by the OS, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A working directory holding the SST-2 fixture and a smoke-like config whose stores all live in it; Ray
    cannot be imported (a pre-flight that let a run reach Ray would fail), and loopback needs no proxy."""
    monkeypatch.chdir(tmp_path)
    shutil.copytree(FIXTURES / "sst2_tiny", tmp_path / "data")
    raw = yaml.safe_load(SMOKE.read_text())
    raw["data"].update(train_file="data/train.tsv", validation_file="data/validation.tsv")
    # a backbone check that is reached fails fast and writes nothing (no init_tiny)
    raw["backbone"].update(name_or_path="./no-model", init_tiny=None)
    raw["storage_path"] = "./ray"
    raw["tracking"]["tracking_uri"] = f"sqlite:///{tmp_path / 'mlflow.db'}"
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump(raw))
    monkeypatch.setitem(sys.modules, "ray", None)
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path))  # no `ray start` cluster to join: the local check applies
    for var in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI", "http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY"):
        monkeypatch.delenv(var, raising=False)
    yield tmp_path
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "mlartifacts").exists()
    assert not (tmp_path / "ray").exists() and not (tmp_path / "no-model").exists()


def fails(args: list[str], *expected: str, code: int = 2) -> str:
    """Run the CLI; assert a non-zero exit with one `error:` line on stderr containing `expected`. That it failed
    before any run started is what `home` checks: Ray cannot be imported there and no store may appear."""
    result = CliRunner().invoke(app, args)
    assert result.exit_code == code, (result.exit_code, result.output, result.exception)
    err = "\n".join(line for line in result.stderr.splitlines() if line.strip() and not RAY_ECHO.match(line))
    assert "\n" not in err and err.startswith("error: "), err
    for text in expected:
        assert text in err, err
    return err


# --- pre-flight of search / train-one / evaluate / bench / submit ------------------------------------------------


def test_missing_data_file_names_the_resolved_path_and_the_rule(home):
    err = fails(["search", "exp.yaml", "data.train_file=data/trian.tsv"], "data.train_file='data/trian.tsv'",
                str(home / "data" / "trian.tsv"), "relative paths resolve against the current directory")
    assert str(home) in err


def test_missing_file_among_search_space_choices(home):
    fails(["search", "exp.yaml", "search.space={data.train_file: {choice: [data/train.tsv, gone.tsv]}}"],
          "search.space.data.train_file='gone.tsv'", str(home / "gone.tsv"))


@pytest.mark.parametrize("label", ["7", "-1"])
def test_label_outside_the_task_label_set_names_file_and_line(home, label):
    (home / "data" / "bad.tsv").write_text(f"sentence\tlabel\na fine film\t1\na bad one\t{label}\n")
    fails(["search", "exp.yaml", "data.train_file=data/bad.tsv"], f"bad.tsv:3: label '{label}'",
          "is not in the label set of task 'sst2'; expected one of '0', '1' (or their words)")


@pytest.mark.parametrize("content", ["", "sentence\tlabel\n"], ids=["empty", "header-only"])
def test_empty_data_file(home, content):
    (home / "data" / "empty.tsv").write_text(content)
    fails(["search", "exp.yaml", "data.validation_file=data/empty.tsv"], "empty.tsv has no examples")


def test_backbone_that_does_not_resolve(home):
    fails(["search", "exp.yaml"], "backbone directory", str(home / "no-model"), "'./no-model'")


def test_trial_that_does_not_fit_this_machine(home):
    fails(["search", "exp.yaml", "train.cpus_per_worker=1000000"], "train.cpus_per_worker=1000000",
          "does not fit this machine")


def test_unreachable_tracking_server(home):
    uri = f"http://127.0.0.1:{closed_port()}"
    fails(["search", "exp.yaml", f"tracking.tracking_uri={uri}"], f"tracking store {uri} is not reachable")


def test_tracking_server_that_answers_passes_even_when_it_refuses_access():
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    from pipeline.preflight import check_tracking

    class Refuse(BaseHTTPRequestHandler):
        def do_GET(self):  # the name http.server calls
            self.send_error(401)

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Refuse)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        check_tracking(f"http://127.0.0.1:{server.server_address[1]}")  # an answer is reachable: no error
    finally:
        server.shutdown()
        server.server_close()


def test_sqlite_store_in_a_missing_directory(home):
    uri = f"sqlite:///{home / 'nowhere' / 'mlflow.db'}"
    fails(["search", "exp.yaml", f"tracking.tracking_uri={uri}"], f"tracking store {uri}", str(home / "nowhere"))


@pytest.mark.parametrize(("override", "expected"), [
    ("search.metric=bogus", "search.metric='bogus' is not reported for task 'sst2'; expected one of: accuracy, loss"),
    ("data.task=sst3", "data.task='sst3' is not a known task; expected one of: cola, sst2"),
    ("method.name=foo", "method.name: unknown prompt method 'foo'; expected one of: adept, dept"),
])
def test_config_values_checked_at_load(home, override, expected):
    fails(["search", "exp.yaml", override], expected)


def test_train_one_runs_the_same_preflight(home):
    fails(["train-one", "exp.yaml", "data.validation_file=missing.tsv"], str(home / "missing.tsv"))


def test_evaluate_config_form_checks_its_data_file(home):
    (home / "data" / "bad.tsv").write_text("sentence\tlabel\nok\t7\n")
    fails(["evaluate", "exp.yaml", "--file", "data/bad.tsv"], "bad.tsv:2: label '7'")


def test_bench_checks_the_backbone(home):
    (home / "bench.yaml").write_text("backbone: {name_or_path: ./no-model}\n")
    fails(["bench", "bench.yaml"], "backbone directory", str(home / "no-model"))


def test_submit_checks_the_uploaded_data_before_contacting_the_cluster(home):
    # the address has no Jobs API: a pre-flight that let the submission through would fail on it instead
    fails(["submit", "exp.yaml", "data.train_file=data/missing.tsv", "--address", f"http://127.0.0.1:{closed_port()}"],
          "data.train_file='data/missing.tsv'", str(home / "data" / "missing.tsv"), "the job's working dir")


# --- other one-line answers ----------------------------------------------------------------------------------------


def test_malformed_yaml_names_file_and_line(home):
    (home / "broken.yaml").write_text("name: x\ndata:\n  task: sst2\n   train_file: [a\n")
    fails(["search", "broken.yaml"], "config file 'broken.yaml' is not valid YAML", "line 4")


def test_predict_on_a_missing_directory(home):
    fails(["predict", "nope", "a fine film"], f"prompt directory {str(home / 'nope')!r} not found")


def test_pull_from_an_unreachable_tracking_uri(home, monkeypatch):
    uri = f"http://127.0.0.1:{closed_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    fails(["pull", "sst2-tiny-llama", "--out", str(home / "prompt")], f"tracking store {uri} is not reachable")
    assert not (home / "prompt").exists()


def test_prompt_artifact_files_share_mode_0644(tmp_path):
    from pipeline import methods
    from pipeline.artifact import CONFIG_FILE, TENSORS_FILE, save_prompt
    from pipeline.methods.base import BackboneInfo
    from pipeline.methods.pt import PTConfig

    info = BackboneInfo("tiny", None, "llama", False, 16, 100, 2)
    cfg = PTConfig(num_tokens=4)
    save_prompt(tmp_path, cfg, methods.build(cfg, info, None).state_dict(), info, "sst2")
    modes = {name: stat.S_IMODE((tmp_path / name).stat().st_mode) for name in (CONFIG_FILE, TENSORS_FILE)}
    assert modes == {CONFIG_FILE: 0o644, TENSORS_FILE: 0o644}


# --- exit status of a search that produced nothing -----------------------------------------------------------------


def _summary(*statuses: str):
    from pipeline.records import SearchSummary, TrialSummary

    trials = [TrialSummary(f"t{i}", {}, 1, None, s, "pt", error="boom" if s == "failed" else None)
              for i, s in enumerate(statuses)]
    return SearchSummary("s-1", "val_loss", "min", trials)


@pytest.mark.parametrize(("statuses", "code"), [(("failed", "failed"), 1), (("failed", "completed"), 0),
                                                 (("pruned", "completed"), 0)])
def test_exit_status_follows_the_trials(monkeypatch, statuses, code):
    import pipeline.tune.search as search

    monkeypatch.setattr(search, "run_search", lambda cfg, **kw: _summary(*statuses))
    result = CliRunner().invoke(app, ["search", str(SMOKE)])
    assert result.exit_code == code, result.output
    failed = statuses.count("failed")
    if code:
        assert result.stderr.strip() == f"error: no trial completed ({failed} of {failed} failed, 0 pruned; " \
                                        "reasons in the table above and in their MLflow runs)"
    else:
        assert (f"{failed} of 2 trials failed" in result.stdout) == bool(failed)
    assert "search id: s-1" in result.stdout  # the table and the id come first either way


def test_job_entry_point_exits_non_zero_when_no_trial_completed(monkeypatch):
    import pipeline.tune.search as search
    from jobs import train_one

    monkeypatch.setattr(search, "train_one", lambda cfg, **kw: _summary("failed"))
    with pytest.raises(SystemExit) as e:
        train_one.main([str(SMOKE)])
    assert e.value.code == 1


@pytest.mark.slow
def test_search_whose_every_trial_fails_exits_non_zero(tmp_path, ray_cluster, monkeypatch):
    """A diverging learning rate passes pre-flight (the config is valid) and every trial fails on a NaN loss."""
    monkeypatch.chdir(ROOT)
    result = CliRunner().invoke(app, [
        "search", str(SMOKE), f"storage_path={tmp_path / 'ray'}", f"tracking.tracking_uri=sqlite:///{tmp_path / 'db'}",
        f"backbone.name_or_path={tmp_path / 'tiny-llama'}", "name=allfail", "search.num_samples=1",
        "search.default_space=false", "search.space={}", "method.lr=1.0e+30", "train.max_steps=6",
        "train.eval_every=6", "train.max_failures=0", "tracking.register=false"])
    assert result.exit_code == 1, result.output[-3000:]
    assert "training loss is nan" in result.stdout and "1 trials (0 pruned, 1 failed)" in result.stdout
    assert result.stderr.strip().splitlines()[-1].startswith("error: no trial completed (1 of 1 failed")


def test_a_corrupt_sqlite_store_is_one_line_before_anything_runs(home):
    """A damaged file gave `search` a 108-line traceback from inside MLflow."""
    db = home / "broken.db"
    db.write_bytes(b"not a database at all, " * 200)
    uri = f"sqlite:///{db}"
    fails(["search", "exp.yaml", f"tracking.tracking_uri={uri}"], f"tracking store {uri}: {str(db)!r} is not a "
          "usable SQLite database (file is not a database); expected the file MLflow wrote")
    assert db.read_bytes() == b"not a database at all, " * 200
