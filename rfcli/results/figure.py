"""The report's picture: training loss, eval loss and each generation metric against step, one line
per run.

Drawn on a bare matplotlib `Figure` with the Agg canvas (no pyplot, no display), so it works on a
server and leaves no global state behind; matplotlib is imported only here.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from rfcli.config.schema import generation_metric_keys
from rfcli.results.experiment import ExperimentResults, RunResult
from rfcli.results.settings import counted

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

PANELS = (("loss", "training loss"), ("eval_loss", "eval loss"))


def legend_label(result: RunResult) -> str:
    """The run's id and what sets it apart, and how it ended when it did not complete."""
    ended = f" ({result.outcome})" if result.ended_early else ""
    return f"run {result.label}{ended}"


def panels(results: ExperimentResults) -> list[tuple[str, str]]:
    """The losses, then each metric of the runs' `eval.metrics` that was logged: (key, title)."""
    logged = {key for result in results.runs for key in result.curves}
    generated = generation_metric_keys([result.run.config for result in results.runs], logged)
    return [*PANELS, *((key, key) for key in generated)]


def loss_figure(results: ExperimentResults) -> Figure:
    """One panel per loss and generation metric; each run keeps its colour in all. A run that ended
    early (stopped, stopped by a policy, failed, deleted) gets an x at its last point."""
    from matplotlib.figure import Figure

    shown = panels(results)
    figure = Figure(figsize=(5.5 * len(shown), 4.8), layout="constrained")
    axes = figure.subplots(1, len(shown))
    for index, result in enumerate(results.runs):
        for ax, (key, _) in zip(axes, shown, strict=True):
            draw_curve(ax, result, key, colour=f"C{index % 10}")
    for ax, (_, title) in zip(axes, shown, strict=True):
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.set_ylabel(title)
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside lower center", ncols=min(3, max(1, len(labels))), fontsize=8)
    figure.suptitle(f"{results.name}: {counted(len(results.runs), 'run')}")
    return figure


def draw_curve(ax: Axes, result: RunResult, key: str, colour: str) -> None:
    points = [(step, value) for step, value in result.curves.get(key, []) if math.isfinite(value)]
    if not points:
        return
    steps, values = zip(*points, strict=True)
    ax.plot(
        steps,
        values,
        color=colour,
        label=legend_label(result),
        marker="." if key.startswith("eval_") else None,
    )
    if result.ended_early:
        ax.scatter([steps[-1]], [values[-1]], marker="x", s=80, color=colour, zorder=3)
