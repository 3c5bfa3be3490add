"""`bench-search` end to end on the tiny LLaMA: the HF Trainer + PEFT search, promptfarm's PT search and ASHA against
the grid on the local Ray cluster; both PT sides try the same learning rates, the ratios come from the recorded
times, the grid runs every trial to its budget, and a second run in the same directory re-runs nothing."""

from __future__ import annotations

import json

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow
TINY = ROOT / "jobs" / "configs" / "bench-search-tiny.yaml"


def test_bench_search_tiny(tmp_path, ray_cluster, monkeypatch, capsys):
    from jobs import bench_search
    from pipeline.bench.search_config import load_search_bench_config, sampled_lrs
    from pipeline.bench.search_report import ratios
    from pipeline.methods.units import REFERENCE_RMS

    monkeypatch.chdir(ROOT)
    out = tmp_path / "bench"
    argv = [str(TINY), "--out", str(out)]
    with pytest.raises(SystemExit) as e:
        bench_search.main(argv)
    assert e.value.code in (0, None), capsys.readouterr().out
    result = json.loads((out / "search.json").read_text())
    cfg = load_search_bench_config(TINY)
    lrs = sampled_lrs(cfg)

    # both PT searches tried exactly the drawn lrs: ours in embedding units, the peer's made absolute
    assert result["lrs"] == lrs and len(lrs) == 2
    assert sorted(t["lr"] for t in result["ours"]["trials"]) == sorted(lrs)
    scale = result["embedding_rms"] / REFERENCE_RMS
    assert sorted(t["lr"] for t in result["peer"]["trials"]) == pytest.approx(sorted(v * scale for v in lrs))
    assert result["ours"]["registered"] and len(result["peer"]["correct"]) == result["report_rows"] == 32
    for side in ("peer", "ours"):
        assert result[side]["trial_steps"] == sum(t["steps"] for t in result[side]["trials"]) > 0
        assert all(r["steps_s"] > 0 and r["start_s"] >= 0 for r in result[side]["split"])

    # the ratios and the page's summary lines are the recorded figures
    r = ratios(result)
    assert r["wall_ours_over_peer"] == result["ours"]["wall_s"] / result["peer"]["wall_s"]
    grid, asha = result["methods"]["fifo"], result["methods"]["asha"]
    assert r["asha_share_of_grid"] == asha["trial_steps"] / grid["trial_steps"]
    first, second = (out / "search.md").read_text().splitlines()[:2]
    assert first == f"wall time ours/peer: {r['wall_ours_over_peer']:.2f}x"
    assert second == f"ASHA trial-steps: {100 * r['asha_share_of_grid']:.0f}% of the grid"

    # the grid: no scheduler, every trial to its last step, the same configurations as ASHA's
    assert grid["scheduler"] == "fifo" and asha["scheduler"] == "asha"
    assert all(t["status"] == "completed" and t["steps"] == 8 for t in grid["trials"]) and len(grid["trials"]) == 2
    key = sorted(json.dumps(t["params"], sort_keys=True) for t in grid["trials"])
    assert key == sorted(json.dumps(t["params"], sort_keys=True) for t in asha["trials"])
    assert "same configurations: yes" in (out / "search.md").read_text()

    # a second run in the same directory keeps every part it holds
    with pytest.raises(SystemExit) as e:
        bench_search.main(argv)
    assert e.value.code in (0, None)
    again = json.loads((out / "search.json").read_text())
    assert again["peer"]["wall_s"] == result["peer"]["wall_s"] and again["methods"] == result["methods"]
