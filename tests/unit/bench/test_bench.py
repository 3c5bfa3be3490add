"""The benchmark on a tiny backbone: rows, trainable params, lengths, ratios, outputs, MLflow, config errors.

Timing targets are reported by the benchmark, never asserted here: only what is computed from the measurements.
"""

from __future__ import annotations

import json
import statistics

import pytest
import torch

from pipeline import methods
from pipeline.bench.config import load_bench_config, method_config
from pipeline.bench.report import BenchResult
from pipeline.bench.run import JSON, MARKDOWN, bench_command, log_mlflow, run_bench, write_outputs
from pipeline.config import ConfigError
from pipeline.methods.base import count_trainable
from pipeline.model.backbone import embedding_rows, load_backbone
from tests.conftest import ROOT

pytest.importorskip("peft")
SEQ = 8
FAST = [f"seq_len={SEQ}", "batch_size=2", "warmup=1", "steps=2", "device=cpu", "num_threads=1"]


def _cfg(path, tmp_path, *extra: str):
    return load_bench_config(None, [f"backbone.name_or_path={path}", f"out_dir={tmp_path / 'out'}", *FAST, *extra])


@pytest.fixture(scope="module")
def bench(tiny_dirs, tmp_path_factory):
    """(config, result, backbone, its state before the bench, attributes before) of one run on the tiny LLaMA."""
    tmp = tmp_path_factory.mktemp("bench")
    cfg = _cfg(tiny_dirs["llama"], tmp, "method_overrides.dept.max_length=16",
               f"tracking_uri=sqlite:///{tmp / 'mlruns.db'}")
    model, _, info = load_backbone(cfg.backbone)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    attrs = (set(model.__dict__), model.config.to_dict(), [p.requires_grad for p in model.parameters()])
    result = run_bench(cfg, (model, info))
    return cfg, result, (model, info), before, attrs


def test_rows_cover_backbone_every_method_and_peft(bench):
    cfg, result, (_, info), _, _ = bench
    names = [r.name for r in result.rows]
    assert names[-1] == "peft-pt" and [r.name for r in result.rows if r.kind == "method"] == methods.names()
    virtual = {methods.get(n).module_cls.num_virtual_tokens(method_config(cfg, n)) for n in methods.names()}
    assert sorted(r.input_len for r in result.rows if r.kind == "backbone") == sorted({SEQ + n for n in virtual | {0}})
    for r in result.rows:
        assert r.total_len == r.input_len + r.virtual_tokens and len(r.step_samples_ms) == cfg.steps == 2
        assert r.step_ms == pytest.approx(statistics.median(r.step_samples_ms))  # the reported step is the median
        assert min(r.step_samples_ms) > 0 and r.infer_ms > 0 and r.own_mib >= 0 and r.peak_mib >= r.own_mib
        if r.kind == "method":
            assert r.input_len == SEQ
            assert r.virtual_tokens == methods.get(r.name).module_cls.num_virtual_tokens(method_config(cfg, r.name))
        if r.kind == "backbone":
            assert r.virtual_tokens == 0 and r.trainable_params == 0
    peft = result.rows[-1]
    assert peft.virtual_tokens == methods.get("pt").module_cls.num_virtual_tokens(method_config(cfg, "pt"))
    assert peft.trainable_params == peft.virtual_tokens * info.hidden_size


def test_trainable_params_match_the_built_methods(bench):
    cfg, result, (model, info), _, _ = bench
    for r in result.rows:
        if r.kind == "method":
            built = methods.build(method_config(cfg, r.name), info, embedding_rows(model), seed=cfg.seed)
            assert r.trainable_params == sum(p.numel() for p in built.parameters() if p.requires_grad)
            assert r.trainable_params == count_trainable(built) > 0
    assert cfg.method_overrides["dept"]["max_length"] == 16
    assert result.config["resolved_methods"]["dept"]["max_length"] == 16  # the override reached the method


def test_ratios_are_computed_from_the_row_medians(bench):
    _, result, _, _, _ = bench
    rows = {r.name: r for r in result.rows}
    limit, peft = rows[f"backbone-{SEQ}"], rows["peft-pt"]
    assert limit.vs_backbone == 1.0 and limit.vs_same_len == 1.0 and limit.overhead_pct is None
    assert peft.vs_peft == 1.0
    for r in result.rows:
        same = rows[f"backbone-{r.total_len}"]
        assert r.vs_backbone == pytest.approx(r.step_ms / limit.step_ms)
        assert r.vs_same_len == pytest.approx(r.step_ms / same.step_ms)
        assert r.vs_peft == pytest.approx(r.step_ms / peft.step_ms)
        if r.kind != "backbone":
            assert r.overhead_pct == pytest.approx(100 * (r.step_ms - same.step_ms) / r.step_ms)
        assert r.tokens_per_s == pytest.approx(2 * r.input_len / (r.step_ms / 1000))


def test_targets_follow_the_measurements(bench):
    _, result, _, _, _ = bench
    rows = {r.name: r for r in result.rows}
    by_name = {t.name: t for t in result.targets}
    pt_vs_peft = by_name["pt at least as fast as PEFT PromptTuning"]
    assert pt_vs_peft.passed == (rows["pt"].step_ms <= rows["peft-pt"].step_ms)
    for name in methods.names():
        t = by_name[f"{name} own overhead < 3% of its step"]
        assert t.passed == (rows[name].overhead_pct < 3.0)
    shorter = [t for t in result.targets if "faster per step than pt" in t.name]
    assert len(shorter) == sum(rows[n].virtual_tokens < rows["pt"].virtual_tokens for n in methods.names()) > 0


def test_markdown_and_json_outputs(bench, tmp_path):
    _, result, _, _, _ = bench
    md, js = write_outputs(result, tmp_path)
    assert (md.name, js.name) == (MARKDOWN, JSON)
    text = md.read_text()
    table = [line for line in text.splitlines() if line.startswith("| ")]
    assert table[0].startswith("| row | tokens (input+virtual) | trainable params | step ms |")
    assert len(table) == 1 + len(result.rows)
    assert [line.split(" | ")[0][2:] for line in table[1:]] == [r.name for r in result.rows]
    assert "Targets (measured, not asserted):" in text
    assert BenchResult.from_dict(json.loads(js.read_text())) == result


def test_backbone_untouched_by_the_bench(bench):
    _, _, (model, _), before, (attrs, config, grads) = bench
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert set(model.__dict__) == attrs and model.config.to_dict() == config  # PEFT wrapped a twin, not it
    assert [p.requires_grad for p in model.parameters()] == grads and not any(grads)


def test_mlflow_run_logged_with_artifacts(bench):
    cfg, result, _, _, _ = bench
    from mlflow import MlflowClient

    files = write_outputs(result, cfg.out_dir)
    run_id = log_mlflow(result, cfg, files)
    client = MlflowClient(cfg.tracking_uri)
    run = client.get_run(run_id)
    assert client.get_experiment(run.info.experiment_id).name == "bench"
    assert run.data.metrics["pt.step_ms"] == pytest.approx(next(r.step_ms for r in result.rows if r.name == "pt"))
    assert run.data.metrics["peft-pt.vs_peft"] == 1.0 and run.data.params["seq_len"] == str(SEQ)
    assert sorted(a.path for a in client.list_artifacts(run_id)) == [JSON, MARKDOWN]


def test_no_mlflow_without_a_uri(bench, monkeypatch):
    cfg, result, _, _, _ = bench
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cfg = load_bench_config(None, ["tracking_uri=null"])
    assert log_mlflow(result, cfg, ()) is None


def test_encoder_decoder_backbone_and_command(tiny_dirs, tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    text = bench_command(None, [f"backbone.name_or_path={tiny_dirs['t5']}", *FAST, "methods=[pt, dept]"],
                         out=tmp_path / "t5")
    result = BenchResult.from_dict(json.loads((tmp_path / "t5" / JSON).read_text()))
    assert [r.name for r in result.rows if r.kind != "backbone"] == ["pt", "dept", "peft-pt"]
    assert text.startswith("| row |") and str(tmp_path / "t5" / MARKDOWN) in text


@pytest.mark.parametrize(("override", "pattern"), [
    ("batch_sise=3", r"unknown key 'batch_sise'; allowed keys: backbone, batch_size"),
    ("method_overrides.dept.rnk=4", r"unknown key 'method_overrides.dept.rnk'; allowed keys: num_tokens, rank"),
    ("methods=[pt, prefix]", r"methods='prefix' is not a registered prompt method; expected one of: adept"),
    ("reference=prefix", r"reference='prefix' is not a registered prompt method"),
    ("steps=0", r"steps=0 is out of range; expected \[1, inf\]"),
    ("device=tpu", r"device='tpu' is not allowed; expected one of \['auto', 'cpu', 'cuda'\]"),
    ("method_overrides.lamp.pool=3", r"lamp: pool=3 does not divide num_tokens=100"),
])
def test_bad_config_fails_in_one_line_naming_the_key(override, pattern):
    with pytest.raises(ConfigError, match=pattern) as e:
        load_bench_config(None, [override])
    assert "\n" not in str(e.value)


def test_job_entry_point_reports_bad_config_in_one_line(capsys):
    from jobs.benchmark import main

    with pytest.raises(SystemExit) as e:
        main(["jobs/configs/bench-tiny.yaml", "warmup=-1"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: warmup=-1 is out of range; expected [1, inf]"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_cuda_requested_without_a_gpu(tiny_dirs, tmp_path):
    with pytest.raises(ConfigError, match=r"device='cuda' but torch sees no CUDA device"):
        run_bench(_cfg(tiny_dirs["llama"], tmp_path, "device=cuda"))


def test_shipped_configs_load():
    tiny = load_bench_config(ROOT / "jobs" / "configs" / "bench-tiny.yaml")
    gpu = load_bench_config(ROOT / "jobs" / "configs" / "bench-gpu.yaml")
    assert tiny.device == "cpu" and tiny.backbone.init_tiny == "llama" and tiny.include_peft
    assert gpu.device == "cuda" and gpu.backbone.dtype == "bfloat16" and gpu.backbone.init_tiny is None


def test_quantised_rows_beside_full_precision(tmp_path):
    """`quantized: [nf4]` adds the frozen backbone and the reference method over an nf4 load of the same backbone;
    their ratios compare with the nf4 backbone, and the weight memory of each load is reported against the 0.3x
    target (width 64: bitsandbytes' CPU 4-bit kernel needs layers at least one 64-block wide)."""
    pytest.importorskip("bitsandbytes")
    cfg = _cfg(tmp_path / "tiny64", tmp_path, "backbone.init_tiny=llama", "backbone.tiny_hidden=64",
               "methods=[pt]", "quantized=[nf4]")
    result = run_bench(cfg)
    rows = {r.name: r for r in result.rows}
    n = rows["pt"].virtual_tokens
    assert {f"backbone-{SEQ}@nf4", f"backbone-{SEQ + n}@nf4", "pt@nf4"} <= set(rows)
    q = rows["pt@nf4"]
    assert q.quant == "nf4" and rows["pt"].quant == "none" and q.trainable_params == rows["pt"].trainable_params
    assert q.vs_same_len == pytest.approx(q.step_ms / rows[f"backbone-{SEQ + n}@nf4"].step_ms)
    assert rows["pt"].vs_same_len == pytest.approx(rows["pt"].step_ms / rows[f"backbone-{SEQ + n}"].step_ms)
    w = result.env["weights_mib"]
    assert 0 < w["nf4"] < w["none"]
    (target,) = [t for t in result.targets if t.name == "nf4 backbone weights at most 0.3x of full precision"]
    assert target.measured.startswith(f"{w['nf4'] / w['none']:.3f}x") and target.passed == (w["nf4"] / w["none"] <= 0.3)
    assert any(t.name == "pt step over nf4 vs full precision (ratio reported)" for t in result.targets)
    assert "Backbone weights (parameters + buffers): none" in result.markdown()


def test_trial_overheads_split_each_trials_wall_into_fixed_cost_and_compute():
    """Two trials one after the other: head = first result - start - its compute_s; tail = next start - last result."""
    from pipeline.bench.trials import overheads, summary

    ev = [{"event": "start", "trial": "a", "t": 100.0},
          {"event": "result", "trial": "a", "t": 112.0, "compute_s": 2.0, "step": 6},
          {"event": "result", "trial": "a", "t": 114.0, "compute_s": 4.0, "step": 12},
          {"event": "end", "trial": "a", "t": 114.5},
          {"event": "start", "trial": "b", "t": 115.0},
          {"event": "result", "trial": "b", "t": 118.0, "compute_s": 2.5, "step": 6},
          {"event": "end", "trial": "b", "t": 118.2}]
    a, b = overheads(ev)
    assert (a["start_to_first_step_s"], a["last_report_to_next_start_s"], a["fixed_s"]) == (10.0, 1.0, 11.0)
    assert (b["start_to_first_step_s"], b["last_report_to_next_start_s"], b["fixed_s"]) == (0.5, None, 0.5)
    assert a["compute_s"] == 4.0 and a["wall_s"] == 14.5
    s = summary([a, b], 20.0)
    assert (s["first_fixed_s"], s["later_fixed_s"], s["mean_compute_s"]) == (11.0, 0.5, 3.25)


def test_bench_trials_writes_its_own_outputs(tmp_path):
    """bench-trials' files come from the library (the CLI prints): trials.md with the ratio, trials.json whole."""
    import json

    from pipeline.bench.trials import summary, write_outputs
    from pipeline.config import ExperimentConfig

    cfg = ExperimentConfig.from_dict({"backbone": {"name_or_path": "tiny"}, "data": {"task": "sst2"}})
    slow = summary([{"fixed_s": 12.0, "compute_s": 4.0, "start_to_first_step_s": 11.0},
                    {"fixed_s": 10.0, "compute_s": 4.0, "start_to_first_step_s": 9.0}], 30.0)
    warm = summary([{"fixed_s": 8.0, "compute_s": 4.0, "start_to_first_step_s": 7.0},
                    {"fixed_s": 0.5, "compute_s": 4.0, "start_to_first_step_s": 0.4}], 13.0)
    result = {"rows": {}, "worker group": slow, "in-process": warm}
    text, files = write_outputs(result, cfg, tmp_path)
    assert [f.name for f in files] == ["trials.md", "trials.json"] and files[0].read_text() == text
    assert "| later trials fixed overhead s (mean) | 10.0 | 0.5 | 20.0x |" in text
    assert json.loads(files[1].read_text()) == result
