"""Job submission without a cluster: what would be sent, and the one-line refusals that happen before sending."""

from __future__ import annotations

import shlex

import pytest

from pipeline.config import ConfigError
from pipeline.submit import EXCLUDES, SubmitError, auth_headers, job_names, job_spec, parse_env, resolve_address
from tests.conftest import ROOT

SMOKE = ROOT / "jobs" / "configs" / "smoke.yaml"


def test_spec_runs_the_job_module_on_the_config_relative_to_the_uploaded_dir(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    entry, env = job_spec("train_one", SMOKE, ["method.lr=0.3", "--no-register"], ROOT, {"A": "1"},
                          "http://mlflow:5000")
    assert shlex.split(entry) == ["python", "-m", "jobs.train_one", "jobs/configs/smoke.yaml", "method.lr=0.3",
                                  "--no-register"]
    assert env["working_dir"] == str(ROOT)
    assert env["env_vars"] == {"A": "1", "MLFLOW_TRACKING_URI": "http://mlflow:5000"}
    assert {".venv", "mlruns.db", "ray_results"} <= set(EXCLUDES) <= set(env["excludes"])


def test_tracking_uri_defaults_to_the_environment(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://from-env:5000")
    assert job_spec("search", SMOKE, [], ROOT, {}, None)[1]["env_vars"]["MLFLOW_TRACKING_URI"] == \
        "http://from-env:5000"


def test_every_shipped_job_module_is_submittable_with_its_own_kind_of_config():
    shipped = sorted(p.stem for p in (ROOT / "jobs").glob("*.py") if not p.stem.startswith("_"))
    assert job_names() == shipped  # the library's table of jobs names exactly the entry points in jobs/
    bench = ROOT / "jobs" / "configs" / "bench-tiny.yaml"
    suite = ROOT / "jobs" / "configs" / "suite-tiny.yaml"
    study = ROOT / "jobs" / "configs" / "study-tiny.yaml"
    searches = ROOT / "jobs" / "configs" / "bench-search-tiny.yaml"
    for job in job_names():
        config = {"benchmark": bench, "suite": suite, "bench_ablation": study, "bench_travel": study,
                  "bench_search": searches}.get(job, SMOKE)
        assert job_spec(job, config, [], ROOT, {}, None)[0].startswith(f"python -m jobs.{job} ")
    with pytest.raises(ConfigError, match="batch_size"):  # a benchmark config is not an experiment
        job_spec("search", bench, [], ROOT, {}, None)
    with pytest.raises(ConfigError, match="warmup=0"):  # and is checked by the benchmark's own rules
        job_spec("benchmark", bench, ["warmup=0"], ROOT, {}, None)
    with pytest.raises(ConfigError, match="tasks"):  # a suite config is checked by the suite's loader
        job_spec("suite", SMOKE, [], ROOT, {}, None)


@pytest.mark.parametrize(("job", "config", "args", "error", "match"), [
    ("serach", SMOKE, [], SubmitError, "job 'serach' is not a module in jobs/; expected one of"),
    ("search", ROOT.parent / "elsewhere.yaml", [], SubmitError, "is outside the working dir"),
    ("search", SMOKE, ["train.max_stepz=3"], ConfigError, "max_stepz"),
    ("search", SMOKE, ["train.max_steps=-1"], ConfigError, "max_steps"),
])
def test_bad_submissions_fail_before_anything_is_sent(job, config, args, error, match):
    with pytest.raises(error, match=match) as e:
        job_spec(job, config, args, ROOT, {}, None)
    assert "\n" not in str(e.value)


def test_env_pairs_and_addresses(monkeypatch):
    assert parse_env(["A=1", "B=x=y"]) == {"A": "1", "B": "x=y"}
    with pytest.raises(SubmitError, match="'A' is not KEY=VALUE"):
        parse_env(["A"])
    monkeypatch.delenv("RAY_API_SERVER_ADDRESS", raising=False)
    monkeypatch.setenv("RAY_ADDRESS", "auto")  # a GCS address, not the Jobs API: ignored
    assert resolve_address(None) == "http://127.0.0.1:8265"
    monkeypatch.setenv("RAY_ADDRESS", "http://head:8265")
    assert resolve_address(None) == "http://head:8265"
    assert resolve_address("https://ray.internal") == "https://ray.internal"
    with pytest.raises(SubmitError, match="'head:6379' is not a Jobs API URL"):
        resolve_address("head:6379")


def test_token_header_from_rays_token_sources(tmp_path, monkeypatch):
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("RAY_AUTH_TOKEN_PATH", raising=False)
    assert auth_headers() == {}
    (tmp_path / ".ray").mkdir()
    (tmp_path / ".ray" / "auth_token").write_text("abc\n")
    assert auth_headers() == {"Authorization": "Bearer abc"}
    (tmp_path / "t").write_text("from-path")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path / "t"))
    assert auth_headers() == {"Authorization": "Bearer from-path"}
    monkeypatch.setenv("RAY_AUTH_TOKEN", "from-env")
    assert auth_headers() == {"Authorization": "Bearer from-env"}


def test_no_cluster_at_the_address_is_one_line():
    from typer.testing import CliRunner

    from pipeline.cli import app

    for args in (["submit", str(SMOKE), "--address", "http://127.0.0.1:9"], ["jobs", "list", "--address",
                                                                            "http://127.0.0.1:9"]):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 2
        assert result.output.strip().splitlines()[-1].startswith("error: cannot use the Ray Jobs API at "
                                                                 "http://127.0.0.1:9: ")


@pytest.mark.parametrize("argv", [["jobs", "list"], ["jobs", "stop", "raysubmit_x"],
                                  ["submit", "jobs/configs/smoke.yaml", "--no-wait"]])
def test_a_head_that_accepts_tcp_but_never_answers_fails_in_one_line(argv, monkeypatch):
    """Ray's client sends its requests without a timeout: against a silent head these commands hung forever."""
    import socket

    from typer.testing import CliRunner

    from pipeline import submit
    from pipeline.cli import app

    monkeypatch.chdir(ROOT)
    monkeypatch.setattr(submit, "REQUEST_TIMEOUT_S", (1.0, 1.0))
    with socket.socket() as silent:  # the kernel completes the handshake from the backlog; nobody ever reads
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        r = CliRunner().invoke(app, [*argv, "--address", url])
    assert r.exit_code == 2, r.output
    (line,) = r.output.strip().splitlines()
    assert line.startswith(f"error: the Ray Jobs API at {url} did not answer GET /api/version within 1 s"), line


def test_a_job_has_one_name_its_module_and_the_cli_spelling_is_refused_with_it():
    """`--job train-one` was bridged to jobs.train_one by replacing '-': a job is named only by its module."""
    with pytest.raises(SubmitError, match=r"job 'train-one' is not a module in jobs/; .*\(the job of `promptfarm "
                                          r"train-one` is 'train_one'\)"):
        job_spec("train-one", SMOKE, [], ROOT, {}, None)
    with pytest.raises(SubmitError, match=r"job 'nope' is not a module in jobs/; expected one of .*train_one"):
        job_spec("nope", SMOKE, [], ROOT, {}, None)


def test_secrets_stores_and_the_configs_own_storage_are_never_uploaded(tmp_path, monkeypatch):
    """Ray uploads the working dir minus `excludes` (gitignore patterns): every secret and store is among them."""
    import shutil

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    shutil.copytree(ROOT / "jobs", tmp_path / "jobs", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "tests" / "fixtures" / "sst2_tiny", tmp_path / "tests" / "fixtures" / "sst2_tiny")
    config = tmp_path / "jobs" / "configs" / "smoke.yaml"
    _, env = job_spec("search", config, ["storage_path=./results/runs"], tmp_path, {}, None, ["big/"])
    for secret in [".env", ".env.*", ".netrc", "id_rsa*", "*.pem", "*.key", "secrets", "*.db", ".ssh", ".aws"]:
        assert secret in env["excludes"], secret
    assert "/results/runs/" in env["excludes"] and "big/" in env["excludes"]  # storage_path and --exclude


def test_large_files_are_listed_and_excluded_ones_are_not(tmp_path):
    from pipeline.submit import large_files

    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "big.bin").write_bytes(b"0" * 2048)
    (tmp_path / "data" / "small.txt").write_text("x")
    (tmp_path / ".venv").mkdir()
    (tmp_path / ".venv" / "huge.so").write_bytes(b"0" * 4096)
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "ckpt.bin").write_bytes(b"0" * 4096)
    assert large_files(tmp_path, [*EXCLUDES, "/results/"], limit=1024) == [("data/big.bin", 2048)]


@pytest.mark.parametrize("uri", ["http://alice:s3cret@mlflow:5000", "https://token@mlflow.example.com"])
def test_a_tracking_uri_with_credentials_is_refused(uri, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with pytest.raises(SubmitError, match=r"--tracking-uri https?://\*\*\*@mlflow.* carries credentials, and a "
                                          r"job's env vars are readable by anyone holding the Ray token") as e:
        job_spec("search", SMOKE, [], ROOT, {}, uri)
    assert "s3cret" not in str(e.value) and "token@" not in str(e.value)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)  # from the environment: the same
    with pytest.raises(SubmitError, match="carries credentials"):
        job_spec("search", SMOKE, [], ROOT, {}, None)
