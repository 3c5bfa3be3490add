"""Sum or mean: how rank classification should compare label words of different token lengths, measured.

    python -c "from pipeline.bench.scoring import compare_scoring as c; print(c('prompt', 'dev.csv'))"
    python -c "from pipeline.bench.scoring import compare_scoring as c; \\
               print(c(None, 'dev.csv', config='jobs/configs/banking77-smollm2.yaml'))"   # the frozen backbone

Each validation example's label-word log-probabilities are computed once (pipeline.evaluation.label_scores) and
read both ways: summed over the word's tokens (EOS included) and divided by that count. Returns the accuracy of
each, the number of examples, and how many predictions the two disagree on.
"""

from __future__ import annotations

import torch

from pipeline.evaluation.label_scores import label_scores


def compare_scoring(prompt_dir: str | None, path: str, config: str | None = None, batch_size: int = 32) -> dict:
    """{'sum': accuracy, 'mean': accuracy, 'n': examples, 'disagree': rows} of a stored prompt (or, with
    `prompt_dir` None, the frozen backbone of `config`) on the validation file `path`."""
    from pipeline.config import load_config
    from pipeline.data.sources import load_examples
    from pipeline.evaluation.predictor import Predictor

    if prompt_dir is None:
        cfg = load_config(config)
        predictor = Predictor.frozen(cfg.backbone, cfg.data)
    else:
        predictor = Predictor.load(prompt_dir)
    task, enc = predictor.task, predictor.encoder
    if not task.is_classification:
        raise ValueError(f"task {task.name!r} is a {task.kind} task; sum or mean scoring is for classification")
    rows = load_examples(task, "validation", path, None, seed=0)
    hits, gold_all = {"sum": 0, "mean": 0}, 0
    disagree = 0
    for i in range(0, len(rows), batch_size):
        part = rows[i: i + batch_size]
        logp, ntok = label_scores(predictor.model, enc, [task.source_text(r) for r in part], task.label_words,
                                  predictor.device)
        gold = torch.tensor([task.label(r) for r in part])
        by_sum, by_mean = logp.argmax(-1).cpu(), (logp / ntok).argmax(-1).cpu()
        hits["sum"] += int((by_sum == gold).sum())
        hits["mean"] += int((by_mean == gold).sum())
        disagree += int((by_sum != by_mean).sum())
        gold_all += len(part)
    return {"sum": hits["sum"] / gold_all, "mean": hits["mean"] / gold_all, "n": gold_all, "disagree": disagree}
