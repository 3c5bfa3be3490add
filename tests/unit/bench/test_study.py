"""The method studies on the tiny model: the travel probe measures each own part's contribution, the paired
ablation scores arms on the same rows and resumes from its record, and the study config fails in one line."""

from __future__ import annotations

import json

import pytest
import yaml

from pipeline.bench.ablation import length_bins, mcnemar
from pipeline.bench.ablation_report import ablation_command
from pipeline.bench.arms import Study
from pipeline.bench.study_config import arm_config, load_study_config
from pipeline.bench.travel import contributions, probe_batch, run_probe
from pipeline.schema import ConfigError
from tests.conftest import FIXTURES, ROOT


def test_mcnemar_is_the_exact_binomial_test_on_the_discordant_rows():
    assert mcnemar([True] * 3 + [False], [False] * 4) == {"a_only": 3, "b_only": 0, "p": 0.25}
    t = mcnemar([True] * 9 + [False] + [True] * 5, [False] * 9 + [True] + [True] * 5)  # 9 vs 1, 5 ties
    assert (t["a_only"], t["b_only"]) == (9, 1) and t["p"] == pytest.approx(2 * 11 / 1024)
    assert mcnemar([True, False], [True, False])["p"] == 1.0


def test_length_bins_split_the_rows_in_three_about_equal_groups():
    bins = length_bins(list(range(10, 40)))
    assert bins == [(10, 19), (20, 29), (30, 39)]


def _study_yaml(tmp_path, tiny_dir, arms, **extra) -> str:
    raw = {"experiment": str(ROOT / "jobs" / "configs" / "smoke.yaml"), "steps": 2, "probe_every": 1,
           "probe_rows": 4, "timing_steps": 1, "report_file": str(FIXTURES / "sst2_tiny" / "validation.tsv"),
           "overrides": [f"backbone.name_or_path={tiny_dir}", "backbone.init_tiny=null", "train.batch_size=4"],
           "arms": arms, **extra}
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(raw))
    return str(path)


DEPT = {"name": "dept", "method": {"name": "dept", "num_tokens": 4, "max_length": 16, "lr": 0.5, "lr_lowrank": 0.3},
        "zero": ["offsets"]}
PT = {"name": "pt-4", "method": {"name": "pt", "num_tokens": 4, "lr": 0.5}}


def test_travel_measures_each_part_from_zero_at_init(tiny_dirs, tmp_path, gloo_world):
    scfg = load_study_config(_study_yaml(tmp_path, tiny_dirs["llama"], [PT, DEPT]))
    study = Study.load(arm_config(scfg, scfg.arms[1]))
    batch = probe_batch(study, 4)
    fresh = study.build(arm_config(scfg, scfg.arms[1]).method, 0)
    start = fresh(batch).inputs_embeds[0, :4].detach()
    assert contributions(fresh, batch, study.rms, start) == {"prompt": 0.0, "offsets": 0.0}  # B = 0 at init
    records = run_probe(scfg)
    assert [r["arm"] for r in records] == ["pt-4", "dept"] and [c["step"] for c in records[1]["curve"]] == [1, 2]
    assert set(records[0]["curve"][-1]) == {"step", "prompt"}
    assert records[1]["curve"][-1]["offsets"] > records[1]["curve"][0]["offsets"] > 0  # the offsets move


def test_ablation_pairs_arms_zeroes_parts_and_resumes(tiny_dirs, tmp_path, gloo_world):
    out = tmp_path / "ablation"
    scfg = load_study_config(_study_yaml(tmp_path, tiny_dirs["llama"], [PT], baselines=["pt-4"]))
    ablation_command(scfg, out)
    first = json.loads((out / "ablation.json").read_text())
    n = len(first["lengths"])
    assert n == 32 and len(first["arms"]["frozen"]["0"]["correct"]) == n
    scfg = load_study_config(_study_yaml(tmp_path, tiny_dirs["llama"], [PT, DEPT], baselines=["pt-4"]))
    text = ablation_command(scfg, out)  # pt-4 is kept from the first run, dept is added
    state = json.loads((out / "ablation.json").read_text())
    assert state["arms"]["pt-4"] == first["arms"]["pt-4"]
    dept = state["arms"]["dept"]["0"]
    assert len(dept["zeroed"]["offsets"]) == n and set(state["cost"]["dept"]) == {"batch", "row"}
    assert "| dept |" in text and "offsets:" in text and "vs pt-4" in text and (out / "ablation.md").exists()


@pytest.mark.parametrize(("arms", "extra", "message"), [
    ([{**PT, "zero": ["offsets"]}], {}, r"arms.pt-4.zero: 'offsets' is not a part of method 'pt'; expected one of"),
    ([PT, PT], {}, "arms: name 'pt-4' appears twice"),
    ([PT], {"baselines": ["pt-100"]}, r"baselines: 'pt-100' is not an arm; expected one of \['pt-4'\]"),
    ([PT], {"report_file": "nope.tsv"}, "report_file='nope.tsv' does not exist"),
    ([{"name": "x", "method": {"name": "pt", "lr_ffn": 1}}], {}, "arms.x: unknown key .method.lr_ffn."),
])
def test_study_config_errors_name_the_key(tmp_path, arms, extra, message):
    with pytest.raises(ConfigError, match=message):
        load_study_config(_study_yaml(tmp_path, "unused", arms, **extra))
