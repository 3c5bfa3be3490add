"""Pieces of the worker loop that need no cluster: the non-finite loss guard, the learning-rate schedule, the
batch stream and the CPU threads a worker takes."""

from __future__ import annotations

import pytest
import torch

from pipeline.train.loop import NonFiniteLossError, _check_finite, lr_lambda


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_loss_raises_one_line_naming_value_and_step(value):
    with pytest.raises(NonFiniteLossError, match=rf"training loss is {value} at step 7; expected a finite value"):
        _check_finite(torch.tensor(value), 7, world=1)


@pytest.mark.parametrize("value", [0.0, 3.5, -1e30, 3.4e38])  # 3.4e38: close to float32's largest finite value
def test_any_finite_loss_passes_the_guard(value):
    assert _check_finite(torch.tensor(value), 1, world=1) is None  # no threshold: only NaN/inf stop a trial


def test_linear_warmup_then_decay_to_zero():
    f = lr_lambda(warmup=2, total=10)
    assert [f(s) for s in (0, 1, 2, 6, 10)] == [0.5, 1.0, 1.0, 0.5, 0.0]


def test_resumed_batch_stream_continues_the_uninterrupted_order():
    from itertools import islice

    from pipeline.train.loop import batches

    feats = [{"input_ids": [i + 2], "labels": [i + 2]} for i in range(10)]
    full = [b["input_ids"].flatten().tolist() for b in islice(batches(feats, 3, 0, seed=5), 8)]
    resumed = [b["input_ids"].flatten().tolist() for b in islice(batches(feats, 3, 0, seed=5, skip=5), 3)]
    assert resumed == full[5:8]
    assert full[0] != full[3]  # epochs are reshuffled (3 batches of 3 per epoch, the remainder dropped)
    assert len(set(sum(full[:3], []))) == 9 and len(set(sum(full[3:6], []))) == 9  # no repeats within an epoch


def test_a_worker_takes_the_cpus_it_reserved_rounded_up():
    from pipeline.train.session import use_reserved_cpus

    saved = torch.get_num_threads()
    try:
        torch.set_num_threads(1)  # what Ray's OMP_NUM_THREADS=1 leaves a worker with
        assert use_reserved_cpus(1.99) == 2 and torch.get_num_threads() == 2
        assert use_reserved_cpus(0.5) == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(saved)
