"""The suite's one plot: report-split score per method per task (grouped bars), the frozen backbone included."""

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
