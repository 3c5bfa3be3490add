"""In-trial progress lines: due every N steps, or after T seconds without one, and at the last step."""

from __future__ import annotations

import pipeline.train.progress as progress_mod
from pipeline.train.progress import EvalProgress, Progress


def test_lines_every_n_steps_with_rate_eta_and_logged_loss(monkeypatch):
    clock = iter(float(t) for t in range(0, 1000, 2))  # every perf_counter call advances 2 s
    monkeypatch.setattr(progress_mod.time, "perf_counter", lambda: next(clock))
    lines, logged = [], []
    p = Progress("trial t1", 0, 25, every=10, seconds=1e9, log=lambda m, s: logged.append((s, m)), echo=lines.append)
    for step in range(1, 26):
        p.add(loss=1.0 / step, tokens=100)
        p.step(step)
    assert [line.split()[4] for line in lines] == ["10/25", "20/25", "25/25"]
    first = lines[0]
    assert first.startswith("[promptfarm] trial t1 step 10/25 train_loss ")
    assert f"{sum(1.0 / s for s in range(1, 11)) / 10:.4f}" in first  # mean loss of the interval
    assert "ETA" in first and "steps/s" in first and "tokens/s" in first
    assert [s for s, _ in logged] == [10, 20, 25]
    assert logged[0][1]["train_loss_interval"] == sum(1.0 / s for s in range(1, 11)) / 10


def test_slow_steps_print_after_the_time_limit(monkeypatch):
    clock = iter(float(t) for t in range(0, 10_000, 40))
    monkeypatch.setattr(progress_mod.time, "perf_counter", lambda: next(clock))
    lines: list[str] = []
    p = Progress("trial t2", 5, 100, every=50, seconds=60.0, echo=lines.append)  # resumed at step 5
    for step in (6, 7, 8):
        p.add(0.5, 10)
        p.step(step)
    assert len(lines) == 1 and "step 7/100" in lines[0]  # 80 s after the start, far before 50 steps


def test_eval_progress_is_rate_limited(monkeypatch):
    clock = iter([0.0, 4.0, 11.0, 12.0, 30.0])  # start, then one reading per batch
    monkeypatch.setattr(progress_mod.time, "perf_counter", lambda: next(clock))
    lines: list[str] = []
    ev = EvalProgress("trial t3 step 25", 200, seconds=10.0, echo=lines.append)
    for done in (32, 64, 96, 128):
        ev(done)
    assert lines == ["[promptfarm] trial t3 step 25 eval 64/200 examples, 11s",
                     "[promptfarm] trial t3 step 25 eval 128/200 examples, 30s"]
