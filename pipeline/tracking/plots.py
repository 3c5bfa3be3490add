"""Search plots logged to the parent MLflow run: metric vs step for every trial, best metric vs trainable params."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pipeline.records import SearchSummary

STYLE = {"completed": "-", "pruned": ":", "failed": "--"}


def figures(s: SearchSummary) -> dict:
    """{artifact file name: matplotlib Figure}; pruned trials dotted and ending where ASHA stopped them."""
    import matplotlib

    matplotlib.use("Agg")  # headless: clusters and CI have no display
    import matplotlib.pyplot as plt

    curves, ax = plt.subplots(figsize=(7, 4.5))
    colors = {m: f"C{i}" for i, m in enumerate(sorted({t.method for t in s.trials}))}
    for t in s.trials:
        if t.history:
            steps, values = zip(*t.history, strict=True)
            ax.plot(steps, values, STYLE[t.status], marker="o", ms=3, color=colors[t.method], alpha=0.8,
                    label=f"{t.method} {t.status}")
    handles, labels = ax.get_legend_handles_labels()
    uniq = dict(zip(labels, handles, strict=True))
    ax.legend(uniq.values(), uniq.keys(), fontsize=8)
    ax.set(xlabel="step", ylabel=s.metric, title=f"{s.search_id}: {s.metric} per trial (dotted = pruned)")

    budget, bx = plt.subplots(figsize=(7, 4.5))
    for method, color in colors.items():
        pts = [(t.trainable_params, t.best) for t in s.trials
               if t.method == method and t.best is not None and t.trainable_params]
        if pts:
            xs, ys = zip(*pts, strict=True)
            bx.scatter(xs, ys, color=color, label=method)
    bx.set(xscale="log", xlabel="trainable parameters", ylabel=f"best {s.metric}",
           title="best metric vs trainable parameters")
    bx.legend(fontsize=8)
    return {"metric_vs_step.png": curves, "best_vs_params.png": budget}


def log_search_plots(client, run_id: str, s: SearchSummary) -> None:
    """Render and attach the plots to the search's parent run under plots/."""
    import matplotlib.pyplot as plt

    for name, fig in figures(s).items():
        client.log_figure(run_id, fig, f"plots/{name}")
        plt.close(fig)
