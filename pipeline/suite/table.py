"""The suite's table, built from per-task results (pure data: no Ray, no MLflow).

Rows are methods (+ the frozen backbone), columns the tasks + their average; a cell is the report-split score of
that method's best trial (chosen on the selection split), with its trainable parameters and the trial-steps all of
the method's trials used. A failed task keeps its column, marked failed with its one-line reason.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

FROZEN = "frozen"


@dataclass
class Cell:
    """One method on one task."""

    score: float | None = None
    """Report-split value of the task's main metric for the method's best trial (None: no trial reported)."""
    params: int | None = None
    """Trainable parameters of that trial's method (0 for the frozen backbone)."""
    trial_steps: int = 0
    """Optimizer steps over all of the method's trials in the task's search (its share of the cost)."""
    trial: str | None = None
    """Trial id whose prompt was scored."""
    n: int | None = None
    """Report examples scored."""
    interval: list[float] | None = None
    """95% Wilson interval of an accuracy score over the n report examples (None for other metrics)."""
    curve: list[list[float]] = field(default_factory=list)
    """Learning curve of the scored trial: [step, selection-split metric, train loss] per evaluation."""


@dataclass
class TaskResult:
    """What one task of a suite produced."""

    task: str
    """Task (column) name."""
    status: str
    """'done' or 'failed'."""
    metric: str = ""
    """Reported metric, e.g. 'accuracy' (the task's main metric)."""
    reason: str | None = None
    """One-line failure reason for a failed task."""
    search_id: str | None = None
    """The task's ASHA search."""
    cells: dict[str, Cell] = field(default_factory=dict)
    """Method (or 'frozen') -> its cell."""
    trial_steps: int = 0
    """Optimizer steps over every trial of the task's search."""
    model_name: str | None = None
    """Registered model of the task's champion."""
    version: str | None = None
    """Version registered by this search (None: not registered or not better than the champion)."""

    @classmethod
    def from_dict(cls, raw: dict) -> TaskResult:
        """Inverse of `dataclasses.asdict` (the JSON a suite run stores per task)."""
        cells = {k: Cell(**v) for k, v in (raw.get("cells") or {}).items()}
        return cls(**{**raw, "cells": cells})


def build_table(results: list[TaskResult], methods: list[str], frozen: bool = True) -> dict:
    """{'tasks': [...], 'rows': [{'method', 'params', 'cells': {task: Cell|None}, 'average'}], 'best': {task: [..]},
    'trial_steps': total} in row order `methods` (+ 'frozen' last when `frozen`)."""
    names = [*methods, FROZEN] if frozen else list(methods)
    done = [r for r in results if r.status == "done"]
    rows = []
    for name in names:
        cells = {r.task: r.cells.get(name) for r in results}
        scores = [c.score for r in done if (c := r.cells.get(name)) is not None and c.score is not None]
        params = sorted({c.params for c in cells.values() if c is not None and c.params is not None})
        rows.append({"method": name, "params": params[0] if len(params) == 1 else params or None,
                     "cells": cells, "average": sum(scores) / len(scores) if done and len(scores) == len(done)
                     else None})
    best = {}
    for r in done:  # every method that ties the column's top score is marked best
        top = max((c.score for n, c in r.cells.items() if n in names and c.score is not None), default=None)
        best[r.task] = [n for n in names if top is not None and (c := r.cells.get(n)) and c.score == top]
    return {"tasks": [{"task": r.task, "status": r.status, "metric": r.metric, "reason": r.reason,
                       "search_id": r.search_id, "trial_steps": r.trial_steps, "model_name": r.model_name,
                       "version": r.version} for r in results],
            "rows": rows, "best": best, "trial_steps": sum(r.trial_steps for r in results)}


def table_json(table: dict) -> dict:
    """JSON-safe copy (cells as dicts)."""
    rows = [{**row, "cells": {t: asdict(c) if c is not None else None for t, c in row["cells"].items()}}
            for row in table["rows"]]
    return {**table, "rows": rows}


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def to_markdown(table: dict) -> str:
    """The table as GitHub markdown: scores in %, best per column in bold, failed tasks marked with their reason."""
    tasks = table["tasks"]
    head = ["method", "params"] + [f"{t['task']} ({t['metric']})" if t["status"] == "done" else
                                   f"{t['task']} (failed)" for t in tasks] + ["average"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in table["rows"]:
        out = [row["method"], "" if row["params"] is None else
               (f"{row['params']:,}" if isinstance(row["params"], int) else "/".join(f"{p:,}" for p in row["params"]))]
        for t in tasks:
            cell = row["cells"].get(t["task"])
            if t["status"] != "done":
                out.append("failed")
            elif cell is None or cell.score is None:
                out.append("—")
            else:
                ci = f" [{_pct(cell.interval[0])}, {_pct(cell.interval[1])}]" if cell.interval else ""
                text = _pct(cell.score) + ci + (f" ({cell.trial_steps:,} steps)" if row["method"] != FROZEN else "")
                out.append(f"**{text}**" if row["method"] in table["best"].get(t["task"], []) else text)
        out.append("—" if row["average"] is None else _pct(row["average"]))
        lines.append("| " + " | ".join(out) + " |")
    notes = [f"- {t['task']} failed: {t['reason']}" for t in tasks if t["status"] != "done"]
    sizes = {t["task"]: c.n for row in table["rows"] for t in tasks if (c := row["cells"].get(t["task"])) and c.n}
    if sizes:
        notes.append("- report examples: " + ", ".join(f"{k} {v:,}" for k, v in sizes.items())
                     + "; [lo, hi]: 95% Wilson interval of an accuracy")
    notes.append(f"- trial-steps over all searches: {table['trial_steps']:,}")
    return "\n".join(lines + [""] + notes) + "\n"
