"""`rf ls`: every experiment in the experiments folder, its runs by state and its last activity.

Reads only each experiment's SQLite store (no torch, no MLflow).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rich.table import Table

from rfcli.cli.options import DirOption
from rfcli.errors import DamagedFileError, NotFoundError
from rfcli.store.database import ExperimentStore
from rfcli.store.experiments import DEFAULT_EXPERIMENTS_DIR, check_experiments_dir, experiment_names
from rfcli.store.layout import ExperimentLayout
from rfcli.ui.tables import format_time, output_console, state_counts


@dataclass(frozen=True)
class ExperimentLine:
    name: str
    runs: str
    """'3 completed · 1 failed'."""
    last_activity: float | None


def ls_command(experiments_dir: DirOption = DEFAULT_EXPERIMENTS_DIR) -> None:
    """List every experiment in the experiments folder: its runs by state and its last activity."""
    check_experiments_dir(experiments_dir)
    if not experiments_dir.is_dir():
        raise NotFoundError(f"no experiments folder {experiments_dir} ({experiments_dir.resolve()})")
    lines = [experiment_line(experiments_dir / name) for name in experiment_names(experiments_dir)]
    console = output_console()
    if not lines:
        console.print(f"no experiments in {experiments_dir}; `rf run CONFIG` starts one")
        return
    console.print(experiments_table(experiments_dir, lines))


def experiment_line(folder: Path) -> ExperimentLine:
    """One experiment's line; a damaged one says so, and the others are listed all the same."""
    try:
        with ExperimentStore(ExperimentLayout(folder).state_db, create=False) as store:
            runs = store.runs()
            events = store.events(limit=1)
    except DamagedFileError as damaged:
        return ExperimentLine(folder.name, f"damaged: {damaged.problem}", None)
    times = [run.updated_at for run in runs] + [event.time for event in events]
    return ExperimentLine(folder.name, state_counts(runs) or "no runs", max(times, default=None))


def experiments_table(experiments_dir: Path, lines: list[ExperimentLine]) -> Table:
    table = Table(title=f"experiments in {experiments_dir}")
    table.add_column("experiment")
    table.add_column("runs")
    table.add_column("last activity", justify="right")
    newest_first = sorted(lines, key=lambda line: line.last_activity or 0.0, reverse=True)
    for line in newest_first:
        when = "-" if line.last_activity is None else format_time(line.last_activity)
        table.add_row(line.name, line.runs, when)
    return table
