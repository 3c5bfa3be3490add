"""Evaluation metrics: classification and regression in plain numpy, generation from well-kept libraries.

Classification predictions are label indices (rank classification, or ``Task.parse_prediction``); -1 (an
unrecognised generation) is never correct. Regression predictions and references are floats. Generation
predictions are texts, each scored against all references of its input (pipeline.data.text_metrics), on the
0-100 scale those libraries report.

Degenerate inputs, where a correlation or F1 has a zero denominator (e.g. a model
that predicts one constant class or score), give 0.0 rather than NaN: "no signal"
is the honest score, and a NaN would poison model selection and averaging.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from pipeline.data.tasks import METRIC_NAMES, Task


def accuracy(predictions: np.ndarray, references: np.ndarray) -> float:
    """Fraction of predictions equal to their reference."""
    return float(np.mean(predictions == references))


def _f1(tp: int, fp: int, fn: int) -> float:
    denominator = 2 * tp + fp + fn
    return 2 * tp / denominator if denominator else 0.0


def binary_f1(predictions: np.ndarray, references: np.ndarray) -> float:
    """F1 of the positive class 1 (anything else, including -1, is negative)."""
    pred_pos = predictions == 1
    ref_pos = references == 1
    tp = int(np.sum(pred_pos & ref_pos))
    return _f1(tp, int(np.sum(pred_pos)) - tp, int(np.sum(ref_pos)) - tp)


def macro_f1(
    predictions: np.ndarray, references: np.ndarray, num_classes: int
) -> float:
    """Unweighted mean of per-class F1 over classes 0..num_classes-1 that occur.

    As in SuperGLUE's CB scorer (sklearn's default), a class is averaged only if it
    appears in the references or the predictions, so a small eval subset lacking a
    class is not charged a 0 for it. -1 predictions are not a class: they only count
    as misses of the true class.
    """
    scores = []
    for cls in range(num_classes):
        pred_c = predictions == cls
        ref_c = references == cls
        if not (pred_c.any() or ref_c.any()):
            continue
        tp = int(np.sum(pred_c & ref_c))
        scores.append(_f1(tp, int(np.sum(pred_c)) - tp, int(np.sum(ref_c)) - tp))
    return float(np.mean(scores)) if scores else 0.0


def matthews(predictions: np.ndarray, references: np.ndarray) -> float:
    """Matthews correlation coefficient (Gorodkin's multiclass form).

    For two classes this is the usual (tp*tn - fp*fn) / sqrt(...); the general form
    lets -1 predictions act as a third, never-correct class instead of being folded
    into the negative class, where they would be rewarded whenever the truth is 0.
    """
    classes, inverse = np.unique(
        np.concatenate([references, predictions]), return_inverse=True
    )
    n = len(references)
    truth, pred = inverse[:n], inverse[n:]
    t_k = np.bincount(truth, minlength=len(classes)).astype(float)
    p_k = np.bincount(pred, minlength=len(classes)).astype(float)
    correct = float(np.sum(truth == pred))
    s = float(n)
    covariance = correct * s - float(t_k @ p_k)
    denominator = np.sqrt((s * s - float(p_k @ p_k)) * (s * s - float(t_k @ t_k)))
    return float(covariance / denominator) if denominator > 0 else 0.0


def pearson(predictions: np.ndarray, references: np.ndarray) -> float:
    """Pearson correlation; 0.0 if either side is constant."""
    x = predictions - predictions.mean()
    y = references - references.mean()
    denominator = np.sqrt(float(x @ x) * float(y @ y))
    if denominator == 0:
        return 0.0
    # Clip float round-off (e.g. 1.0000000000000002) back into [-1, 1].
    return float(np.clip(float(x @ y) / denominator, -1.0, 1.0))


def average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, tied values sharing the mean of the ranks they span."""
    order = np.argsort(values, kind="mergesort")
    ordered = values[order]
    starts_run = np.r_[True, ordered[1:] != ordered[:-1]]
    run_of = np.cumsum(starts_run) - 1
    run_start = np.flatnonzero(starts_run)
    run_end = np.r_[run_start[1:], len(values)]
    run_rank = (run_start + run_end - 1) / 2 + 1
    ranks = np.empty(len(values), dtype=float)
    ranks[order] = run_rank[run_of]
    return ranks


def spearman(predictions: np.ndarray, references: np.ndarray) -> float:
    """Spearman rank correlation: Pearson of the average ranks."""
    return pearson(average_ranks(predictions), average_ranks(references))


# name -> (needs float inputs?, scorer(predictions, references, task)); classification and regression
_Metric = Callable[[np.ndarray, np.ndarray, Task], float]
_METRICS: dict[str, tuple[bool, _Metric]] = {
    "accuracy": (False, lambda p, r, task: accuracy(p, r)),
    "f1": (False, lambda p, r, task: binary_f1(p, r)),
    "macro_f1": (False, lambda p, r, task: macro_f1(p, r, len(task.label_words or ()))),
    "matthews": (False, lambda p, r, task: matthews(p, r)),
    "pearson": (True, lambda p, r, task: pearson(p, r)),
    "spearman": (True, lambda p, r, task: spearman(p, r)),
}


def metric_names(kind: str = "classification") -> list[str]:
    """Names accepted in ``Task.metrics`` for a task of `kind` (pipeline.data.tasks.METRIC_NAMES)."""
    return list(METRIC_NAMES[kind])


def _as_array(values: Sequence, as_float: bool, what: str) -> np.ndarray:
    array = np.asarray(values, dtype=float)
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{what} contain non-finite values (NaN or inf)")
    if as_float:
        return array
    if not np.all(array == np.round(array)):
        raise ValueError(
            f"{what} must be integer label indices for a classification metric"
        )
    return array.astype(np.int64)


def compute_metrics(
    task: Task, predictions: Sequence, references: Sequence
) -> dict[str, float]:
    """Compute every metric in ``task.metrics``; returns {name: value}. Generation: `predictions` are texts and
    `references` lists of texts (all references of each input)."""
    if len(predictions) != len(references):
        raise ValueError(
            f"got {len(predictions)} predictions but {len(references)} references; "
            "they must have the same length"
        )
    if len(predictions) == 0:
        raise ValueError(f"no predictions to score for task {task.name!r}")
    if task.kind == "generation":
        from pipeline.data.text_metrics import text_metrics

        return text_metrics(task.metrics, list(predictions), [list(r) for r in references])
    results = {}
    for name in task.metrics:
        if name not in _METRICS:
            raise ValueError(
                f"unknown metric {name!r} for task {task.name!r}; "
                f"expected one of: {', '.join(_METRICS)}"
            )
        as_float, scorer = _METRICS[name]
        preds = _as_array(predictions, as_float, "predictions")
        refs = _as_array(references, as_float, "references")
        results[name] = scorer(preds, refs, task)
    return results


def wilson_interval(accuracy: float, n: int, z: float = 1.96) -> list[float]:
    """95% Wilson score interval [lo, hi] of a proportion measured on n examples (sound at 0 or 1, unlike +-2 SE)."""
    centre = (accuracy + z * z / (2 * n)) / (1 + z * z / n)
    half = z * (accuracy * (1 - accuracy) / n + z * z / (4 * n * n)) ** 0.5 / (1 + z * z / n)
    return [max(0.0, centre - half), min(1.0, centre + half)]
