"""bench-search's arithmetic on recorded figures: the lr draw, the time split of both sides, ratios, the paired
difference, and the grace-period rule read off a grid's curves."""

from __future__ import annotations

import pytest

from pipeline.bench.search_bench import our_split, peer_split
from pipeline.bench.search_config import SearchBenchConfig, experiment, load_search_bench_config, sampled_lrs
from pipeline.bench.search_report import curve_rule, grace_from, paired_difference, ratios, same_configurations
from pipeline.config import ConfigError
from tests.conftest import ROOT

TINY = ROOT / "jobs" / "configs" / "bench-search-tiny.yaml"


def test_lrs_are_drawn_once_from_the_seed_inside_the_range():
    cfg = SearchBenchConfig(lr_samples=6, lr_range=[0.1, 2.0], lr_seed=3)
    lrs = sampled_lrs(cfg)
    assert lrs == sampled_lrs(cfg) and len(set(lrs)) == 6 and all(0.1 <= v <= 2.0 for v in lrs)
    assert lrs != sampled_lrs(SearchBenchConfig(lr_samples=6, lr_range=[0.1, 2.0], lr_seed=4))


def test_our_part_is_pt_over_a_grid_of_the_drawn_lrs_one_trial_each():
    cfg = load_search_bench_config(TINY)
    exp = experiment(cfg, "ours")
    assert exp.method_name == "pt" and exp.method.num_tokens == cfg.num_tokens
    assert exp.search.space == {"method.lr": {"grid": sampled_lrs(cfg)}} and exp.search.num_samples == 1
    assert exp.search.metric == "loss" and not exp.search.default_space and exp.search.methods == {}
    grid = experiment(cfg, "methods", "fifo")
    assert grid.search.scheduler == "fifo" and set(grid.search.methods) == {"pt", "dept"}


@pytest.mark.parametrize("key, value, needle", [("lr_range", "[2, 1]", "lr_range"),
                                                ("report_file", "missing.tsv", "missing.tsv"),
                                                ("parts", "[peer, nope]", "nope")])
def test_bad_bench_search_config_fails_in_one_line(key, value, needle):
    with pytest.raises(ConfigError, match=needle):
        load_search_bench_config(TINY, [f"{key}={value}"])


def test_our_split_separates_start_steps_eval_and_the_gap():
    events = [{"t": 100.0, "event": "start", "trial": "a"},
              {"t": 112.0, "event": "result", "trial": "a", "compute_s": 2.0, "eval_s": 0.5},
              {"t": 114.0, "event": "result", "trial": "a", "compute_s": 4.0, "eval_s": 0.5},
              {"t": 114.5, "event": "end", "trial": "a"},
              {"t": 115.0, "event": "start", "trial": "b"},
              {"t": 116.0, "event": "result", "trial": "b", "compute_s": 0.8, "eval_s": 0.2}]
    a, b = our_split(events)
    assert a["start_s"] == pytest.approx(10.0) and a["steps_s"] == pytest.approx(3.0)
    assert a["eval_s"] == pytest.approx(1.0) and a["gap_s"] == pytest.approx(1.0)
    assert b["start_s"] == pytest.approx(0.2) and b["gap_s"] is None


def test_peer_split_reads_model_init_setup_steps_and_evaluations():
    events = [{"t": 0.0, "event": "start", "trial": "p"}, {"t": 30.0, "event": "start", "trial": "q"}]
    stamps = [{"t": t, "trial": "p", "event": e, "step": s} for t, e, s in [
        (2.0, "init_begin", 0), (5.0, "init_end", 0), (6.0, "train_begin", 0), (10.0, "step", 1),
        (14.0, "step", 2), (16.0, "evaluate", 2), (17.0, "save", 2), (20.0, "step", 3), (21.0, "train_end", 3)]]
    # q: stopped by ASHA inside its first evaluation's report, so no save follows the evaluation
    stamps += [{"t": t, "trial": "q", "event": e, "step": s} for t, e, s in [
        (31.0, "init_begin", 0), (32.0, "init_end", 0), (33.0, "train_begin", 0), (36.0, "step", 1),
        (39.0, "step", 2), (44.0, "evaluate", 2)]]
    p, q = peer_split(events, stamps)
    assert p["start_s"] == pytest.approx(3.0) and p["load_s"] == pytest.approx(3.0)  # 2 before init + 1 after
    assert p["eval_s"] == pytest.approx(3.0) and p["steps_s"] == pytest.approx(12.0)
    assert p["gap_s"] == pytest.approx(9.0)
    assert q["eval_s"] == pytest.approx(5.0) and q["steps_s"] == pytest.approx(6.0) and q["gap_s"] is None


def test_ratios_and_the_paired_difference_come_from_the_record():
    result = {"ours": {"wall_s": 30.0}, "peer": {"wall_s": 120.0},
              "methods": {"asha": {"trial_steps": 35}, "fifo": {"trial_steps": 100}}}
    assert ratios(result) == {"wall_ours_over_peer": 0.25, "asha_share_of_grid": 0.35}
    d, lo, hi = paired_difference([True, True, False, True], [True, False, False, False])
    assert d == pytest.approx(50.0) and lo < d < hi


def _trial(tid, method, losses, params=None):
    return {"trial": tid, "method": method, "params": params or {"method.lr": tid},
            "history": [(10 * (i + 1), v) for i, v in enumerate(losses)]}


def test_grace_rule_waits_for_the_curves_to_rank_like_the_end():
    # report 1 ranks the trials backwards (the best starts slowest); from report 2 on the order is final
    grid = {"trials": [_trial("a", "pt", [0.9, 0.3, 0.2]), _trial("b", "pt", [0.5, 0.6, 0.7]),
                       _trial("c", "dept", [0.4, 0.5, 0.55]), _trial("d", "dept", [0.8, 0.7, 0.75])]}
    rule = curve_rule(grid, reduction_factor=2)
    assert [r["keeps_best"] for r in rule] == [False, True, True]
    assert rule[0]["spearman"] < 0 and rule[2]["spearman"] == pytest.approx(1.0)
    assert grace_from(rule) == 2


def test_same_configurations_compares_the_sampled_params_as_multisets():
    a = {"trials": [_trial("x", "pt", [1.0], {"method.lr": 0.1}), _trial("y", "pt", [1.0], {"method.lr": 0.2})]}
    b = {"trials": [_trial("z", "pt", [1.0], {"method.lr": 0.2}), _trial("w", "pt", [1.0], {"method.lr": 0.1})]}
    c = {"trials": [_trial("z", "pt", [1.0], {"method.lr": 0.2}), _trial("w", "pt", [1.0], {"method.lr": 0.3})]}
    assert same_configurations(a, b) and not same_configurations(a, c)


def test_an_interrupted_part_exits_128_plus_the_signal_and_says_the_finished_parts_are_kept(monkeypatch, tmp_path):
    import signal

    from typer.testing import CliRunner

    from pipeline.bench import search_bench
    from pipeline.cli import app
    from pipeline.tune.interrupt import Interrupted

    def stopped(cfg, out_dir):
        raise Interrupted("the peer search", signal.SIGTERM)

    monkeypatch.setattr(search_bench, "bench_search_command", stopped)
    result = CliRunner().invoke(app, ["bench-search", str(TINY), "--out", str(tmp_path)])
    assert result.exit_code == 128 + signal.SIGTERM
    assert "interrupted: the peer search stopped" in result.output and str(tmp_path) in result.output
