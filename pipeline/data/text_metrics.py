"""Generation metrics against several references per input, each from the library that defines it (0-100 scale):

- bleu: corpus BLEU of sacrebleu (13a tokenisation, all references of an input), the E2E NLG challenge's measure;
- rouge_l: ROUGE-L F-measure of Google's `rouge-score` (best reference per input, mean over inputs);
- exact_match, token_f1: the SQuAD v1.1 scores with its answer normalisation (lowercase, no punctuation, articles
  or extra spaces; best reference per input), as torchmetrics implements the official script.
"""

from __future__ import annotations

TEXT_METRICS = ("bleu", "rouge_l", "exact_match", "token_f1")


def bleu(predictions: list[str], references: list[list[str]]) -> float:
    """sacrebleu corpus BLEU; inputs with fewer references pad their streams with None (sacrebleu's convention)."""
    from sacrebleu.metrics import BLEU

    width = max(len(r) for r in references)
    streams = [[refs[i] if i < len(refs) else None for refs in references] for i in range(width)]
    return float(BLEU().corpus_score(predictions, streams).score)


def rouge_l(predictions: list[str], references: list[list[str]]) -> float:
    """Mean over inputs of the best reference's ROUGE-L F-measure, x100."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"])
    scores = [scorer.score_multi(refs, pred)["rougeL"].fmeasure for pred, refs in zip(predictions, references,
                                                                                      strict=True)]
    return 100.0 * sum(scores) / len(scores)


def _squad(predictions: list[str], references: list[list[str]]) -> dict[str, float]:
    from torchmetrics.functional.text import squad

    preds = [{"prediction_text": p, "id": str(i)} for i, p in enumerate(predictions)]
    target = [{"answers": {"answer_start": [0] * len(r), "text": list(r)}, "id": str(i)}
              for i, r in enumerate(references)]
    return {k: float(v) for k, v in squad(preds, target).items()}


_SCORERS = {  # name -> scorer(predictions, references, squad scores)
    "bleu": lambda p, r, sq: bleu(p, r),
    "rouge_l": lambda p, r, sq: rouge_l(p, r),
    "exact_match": lambda p, r, sq: sq["exact_match"],
    "token_f1": lambda p, r, sq: sq["f1"],
}


def text_metrics(names, predictions: list[str], references: list[list[str]]) -> dict[str, float]:
    """{name: value} for each of `names` (a subset of TEXT_METRICS)."""
    unknown = [n for n in names if n not in _SCORERS]
    if unknown:
        raise ValueError(f"unknown generation metric {unknown[0]!r}; expected one of: {', '.join(TEXT_METRICS)}")
    squad = _squad(predictions, references) if {"exact_match", "token_f1"} & set(names) else {}
    return {name: _SCORERS[name](predictions, references, squad) for name in names}
