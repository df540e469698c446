"""`rf compare RUN_ID RUN_ID ...`: the settings that differ and the latest metrics, side by side.

Reads only the experiment's SQLite store (no torch, no MLflow).
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from rfcli.cli.options import DirOption, ExperimentOption
from rfcli.errors import UserError
from rfcli.results.experiment import ExperimentResults, load_results
from rfcli.store.experiments import DEFAULT_EXPERIMENTS_DIR, find_experiment
from rfcli.ui.tables import format_metric, output_console, step_text

RunIdsArgument = Annotated[
    list[int], typer.Argument(help="Two or more run ids, as `rf status` shows them.", show_default=False)
]
FIRST_METRICS = ("loss", "eval_loss")


def compare_command(
    run_ids: RunIdsArgument,
    experiment: ExperimentOption = None,
    experiments_dir: DirOption = DEFAULT_EXPERIMENTS_DIR,
) -> None:
    """Put runs side by side: the settings that differ between them, their state and latest metrics."""
    if len(set(run_ids)) < 2:
        raise UserError(f"compare needs two or more different run ids, got: {' '.join(map(str, run_ids))}")
    folder = find_experiment(experiment, search_dir=experiments_dir)
    output_console().print(comparison_table(load_results(folder, list(dict.fromkeys(run_ids)))))


def comparison_table(results: ExperimentResults) -> Table:
    table = Table(title=f"{results.name}: runs {', '.join(str(r.run.id) for r in results.runs)}")
    table.add_column("")
    for result in results.runs:
        table.add_column(f"run {result.run.id}", justify="right")
    table.add_row("state", *(result.outcome for result in results.runs))
    table.add_row(
        "step", *(step_text(result.run.global_step, result.run.max_steps) for result in results.runs)
    )
    settings = list(results.runs[0].settings)
    for key in settings:
        table.add_row(key, *(result.settings[key] for result in results.runs), style="cyan")
    if not settings:
        table.add_row("settings", *("same" for _ in results.runs), style="cyan")
    logged = results.logged_metrics()
    first = [key for key in FIRST_METRICS if key in logged]
    for key in first + [key for key in logged if key not in FIRST_METRICS]:
        values = (format_metric(result.latest.get(key)) for result in results.runs)
        table.add_row(key, *values, end_section=key == first[-1] if first else False)
    table.caption = "settings that differ between these runs, then each metric's latest value"
    return table
