"""The suite's plots: report-split score per method per task (grouped bars, the frozen backbone included) and the
learning curves of every method's scored trial (selection-split metric and train loss against steps)."""

from __future__ import annotations


def score_figure(table: dict):
    """A matplotlib Figure: one group of bars per done task, one bar per method (score in %)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = [t["task"] for t in table["tasks"] if t["status"] == "done"]
    rows = table["rows"]
    fig, ax = plt.subplots(figsize=(max(4.0, 1.5 * len(tasks) * max(1, len(rows)) / 3), 3.2))
    width = 0.8 / max(1, len(rows))
    for i, row in enumerate(rows):
        ys = [100 * c.score if (c := row["cells"].get(t)) is not None and c.score is not None else 0.0 for t in tasks]
        ax.bar([k + i * width for k in range(len(tasks))], ys, width, label=row["method"])
    ax.set_xticks([k + 0.4 - width / 2 for k in range(len(tasks))], tasks)
    ax.set_ylabel("report-split score (%)")
    ax.legend(fontsize=7, ncol=min(3, max(1, len(rows))))
    fig.tight_layout()
    return fig


def curve_figure(table: dict):
    """A matplotlib Figure: per done task, the selection metric (top) and train loss (bottom) of each method's
    scored trial at every evaluation, the frozen backbone's report score as a dashed line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = [t for t in table["tasks"] if t["status"] == "done"] or [{"task": "-", "metric": ""}]
    fig, axes = plt.subplots(2, len(tasks), figsize=(4.5 * len(tasks), 5.5), squeeze=False, sharex="col")
    for k, t in enumerate(tasks):
        top, bottom = axes[0][k], axes[1][k]
        for row in table["rows"]:
            cell = row["cells"].get(t["task"])
            if cell is None:
                continue
            if row["method"] == "frozen":
                if cell.score is not None:
                    top.axhline(100 * cell.score, ls="--", color="grey", label="frozen (report)")
                continue
            if cell.curve:
                steps = [c[0] for c in cell.curve]
                top.plot(steps, [100 * c[1] for c in cell.curve], marker="o", ms=3, label=row["method"])
                bottom.plot(steps, [c[2] for c in cell.curve], marker="o", ms=3, label=row["method"])
        top.set_title(t["task"])
        top.set_ylabel(f"selection {t['metric']} (%)")
        bottom.set_ylabel("train loss")
        bottom.set_xlabel("step")
        top.legend(fontsize=7)
    fig.tight_layout()
    return fig
