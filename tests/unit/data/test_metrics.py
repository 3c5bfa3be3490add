"""Tests for pipeline.data.metrics against hand-computed values."""

import math

import numpy as np
import pytest

from pipeline.data.builtin import get_task, task_names
from pipeline.data.metrics import average_ranks, compute_metrics, matthews, metric_names


def test_every_task_metric_is_implemented():
    for name in task_names():
        assert set(get_task(name).metrics) <= set(metric_names(get_task(name).kind))


def test_accuracy_and_binary_f1():
    # tp=2 fp=1 fn=1 -> F1 = 2*2 / (2*2 + 1 + 1) = 2/3; 3 of 5 correct.
    result = compute_metrics(get_task("mrpc"), [1, 0, 1, 1, 0], [1, 1, 1, 0, 0])
    assert result == {"f1": pytest.approx(2 / 3), "accuracy": pytest.approx(0.6)}


def test_unknown_prediction_is_never_correct():
    # -1 on a negative example is wrong for accuracy and not a positive for F1.
    result = compute_metrics(get_task("qqp"), [-1, 1, -1], [0, 1, 1])
    assert result["accuracy"] == pytest.approx(1 / 3)
    assert result["f1"] == pytest.approx(2 * 1 / (2 * 1 + 0 + 1))


def test_matthews_known_confusion_matrix():
    # tp=3 fn=1 fp=1 tn=5: (3*5 - 1*1) / sqrt(4 * 4 * 6 * 6) = 14 / 24.
    refs = [1, 1, 1, 1, 0, 0, 0, 0, 0, 0]
    preds = [1, 1, 1, 0, 1, 0, 0, 0, 0, 0]
    result = compute_metrics(get_task("cola"), preds, refs)
    assert result == {"matthews": pytest.approx(14 / 24)}
    assert compute_metrics(get_task("cola"), refs, refs)["matthews"] == pytest.approx(
        1.0
    )
    flipped = [1 - r for r in refs]
    assert compute_metrics(get_task("cola"), flipped, refs)[
        "matthews"
    ] == pytest.approx(-1.0)


def test_matthews_treats_unknown_as_its_own_class():
    refs = np.array([1, 1, 0, 0])
    # Folding -1 into class 0 would make this perfect; it must score lower.
    assert matthews(np.array([1, 1, -1, -1]), refs) < 1.0
    assert matthews(np.array([1, 1, 0, 0]), refs) == pytest.approx(1.0)


def test_macro_f1_for_cb():
    # class 0: tp1 fp0 fn1 -> 2/3; class 1: tp1 fp1 fn0 -> 2/3; class 2: tp0 fn1 -> 0.
    result = compute_metrics(get_task("cb"), [0, 1, 1, -1], [0, 0, 1, 2])
    assert result["macro_f1"] == pytest.approx((2 / 3 + 2 / 3 + 0) / 3)
    assert result["accuracy"] == pytest.approx(0.5)


def test_macro_f1_skips_classes_absent_from_both_sides():
    result = compute_metrics(get_task("cb"), [0, 1], [0, 1])
    assert result["macro_f1"] == pytest.approx(1.0)


def test_pearson_and_spearman_with_ties():
    # Ranks of x with the tie averaged: [1, 2.5, 2.5, 4]; y ranks [1, 3, 2, 4].
    # Deviations: x [-1.5, 0, 0, 1.5], y [-1.5, .5, -.5, 1.5] -> 4.5 / sqrt(4.5 * 5).
    x, y = [1.0, 2.0, 2.0, 3.0], [1.0, 3.0, 2.0, 4.0]
    result = compute_metrics(get_task("stsb"), x, y)
    assert result["spearman"] == pytest.approx(4.5 / math.sqrt(22.5))
    # Pearson on raw values: x dev [-1,0,0,1], y dev [-1.5,.5,-.5,1.5] -> 3/sqrt(2*5).
    assert result["pearson"] == pytest.approx(3 / math.sqrt(10))


def test_average_ranks():
    ranks = average_ranks(np.array([10.0, 30.0, 20.0, 30.0, 30.0, 5.0]))
    assert ranks.tolist() == [2.0, 5.0, 3.0, 5.0, 5.0, 1.0]


def test_spearman_is_rank_based():
    x = [1.0, 2.0, 3.0, 4.0, 5.0]
    y = [v**3 for v in x]
    result = compute_metrics(get_task("stsb"), x, y)
    assert result["spearman"] == pytest.approx(1.0)
    assert result["pearson"] < 0.99
    reversed_result = compute_metrics(get_task("stsb"), x, y[::-1])
    assert reversed_result["spearman"] == pytest.approx(-1.0)


def test_constant_predictions_score_zero_not_nan():
    stsb = compute_metrics(get_task("stsb"), [2.0, 2.0, 2.0], [1.0, 2.0, 3.0])
    assert stsb == {"pearson": 0.0, "spearman": 0.0}
    assert compute_metrics(get_task("cola"), [1, 1, 1], [0, 1, 0]) == {"matthews": 0.0}
    # No positives anywhere: F1 has a 0/0 and scores 0.0.
    assert compute_metrics(get_task("mrpc"), [0, 0], [0, 0])["f1"] == 0.0


def test_values_are_plain_floats():
    for value in compute_metrics(get_task("cb"), [0, 1, 2], [0, 2, 2]).values():
        assert type(value) is float


def test_input_errors():
    with pytest.raises(ValueError, match="got 2 predictions but 3 references"):
        compute_metrics(get_task("sst2"), [0, 1], [0, 1, 1])
    with pytest.raises(ValueError, match="no predictions to score"):
        compute_metrics(get_task("sst2"), [], [])
    with pytest.raises(ValueError, match="non-finite"):
        compute_metrics(get_task("stsb"), [float("nan"), 1.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="integer label indices"):
        compute_metrics(get_task("sst2"), [0.5, 1], [0, 1])


def test_matches_sklearn_when_available():
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    refs = rng.integers(0, 2, 200)
    preds = np.where(rng.random(200) < 0.7, refs, rng.integers(-1, 2, 200))
    ours = compute_metrics(get_task("mrpc"), preds.tolist(), refs.tolist())
    assert ours["f1"] == pytest.approx(
        sklearn_metrics.f1_score(refs, preds, labels=[1], average="micro")
    )
    cola = compute_metrics(get_task("cola"), preds.tolist(), refs.tolist())
    assert cola["matthews"] == pytest.approx(
        sklearn_metrics.matthews_corrcoef(refs, preds)
    )


def test_spearman_matches_scipy_when_available():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(1)
    refs = np.round(rng.uniform(0, 5, 100) * 5) / 5  # many ties, like STS-B targets
    preds = np.round((refs + rng.normal(0, 1, 100)) * 5) / 5
    ours = compute_metrics(get_task("stsb"), preds.tolist(), refs.tolist())
    assert ours["spearman"] == pytest.approx(stats.spearmanr(preds, refs).statistic)
    assert ours["pearson"] == pytest.approx(stats.pearsonr(preds, refs).statistic)


def test_the_metric_name_table_is_what_the_scorers_compute():
    """Task validation reads pipeline.data.tasks.METRIC_NAMES (no import of the scorers); the scorers' own tables
    must hold exactly those names."""
    from pipeline.data import metrics, text_metrics
    from pipeline.data.tasks import METRIC_NAMES

    assert set(metrics._METRICS) == set(METRIC_NAMES["classification"]) | set(METRIC_NAMES["regression"])
    assert set(text_metrics.TEXT_METRICS) == set(METRIC_NAMES["generation"])
