"""`rf status [EXPERIMENT]`: every run of an experiment, its state, progress and latest losses.

Reads only the experiment's SQLite store (no torch, no MLflow), so it answers at once from any
terminal while `rf run` trains.
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from rfcli.store.database import RUN_STATES, EventRecord, ExperimentStore, RunRecord
from rfcli.store.experiments import DEFAULT_EXPERIMENTS_DIR, STATE_DB, find_experiment

RECENT_EVENTS = 8
STATE_STYLES = {
    "pending": "dim",
    "running": "bold cyan",
    "ready": "blue",
    "completed": "green",
    "stopped": "yellow",
    "failed": "bold red",
    "deleted": "dim strike",
}

ExperimentArgument = Annotated[
    str | None,
    typer.Argument(help="Experiment name; default: the one written to most recently.", show_default=False),
]
DirOption = Annotated[Path, typer.Option("--dir", help="Folder holding the experiments.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print runs and recent events as JSON.")]


def status_command(
    experiment: ExperimentArgument = None,
    experiments_dir: DirOption = DEFAULT_EXPERIMENTS_DIR,
    as_json: JsonOption = False,
) -> None:
    """Show every run of an experiment: state, chunk progress, step, latest losses, recent events."""
    folder = find_experiment(experiment, search_dir=experiments_dir)
    with ExperimentStore(folder / STATE_DB) as store:
        runs = store.runs()
        latest = {run.id: store.latest_metrics(run.id) for run in runs}
        events = store.events(limit=RECENT_EVENTS)
    if as_json:
        typer.echo(json.dumps(status_json(folder, runs, latest, events), indent=2))
        return
    Console().print(status_view(folder, runs, latest, events))


def status_view(
    folder: Path, runs: list[RunRecord], latest: dict[int, dict[str, float]], events: list[EventRecord]
) -> Group:
    """The runs table, then the recent events oldest first, like the tail of a log."""
    table = Table(title=f"{folder.name}: {len(runs)} runs", caption=state_counts(runs))
    table.add_column("run", justify="right")
    table.add_column("name", overflow="fold")
    table.add_column("state")
    table.add_column("chunks", justify="right")
    table.add_column("step", justify="right")
    table.add_column("loss", justify="right")
    table.add_column("eval loss", justify="right")
    for run in runs:
        metrics = latest.get(run.id, {})
        table.add_row(
            str(run.id),
            run.name,
            Text(run.state, style=STATE_STYLES.get(run.state, "")),
            f"{run.chunks_done}/{'?' if run.total_chunks is None else run.total_chunks}",
            f"{run.global_step}" if run.max_steps is None else f"{run.global_step}/{run.max_steps}",
            format_metric(metrics.get("loss")),
            format_metric(metrics.get("eval_loss")),
        )
    lines: list[Any] = [table if runs else Text(f"{folder.name}: no runs yet", style="dim")]
    if events:
        lines.append(Text("recent events", style="bold"))
        lines.extend(event_line(event) for event in reversed(events))
    return Group(*lines)


def state_counts(runs: list[RunRecord]) -> str:
    counts = Counter(run.state for run in runs)
    return " · ".join(f"{counts[state]} {state}" for state in RUN_STATES if counts[state])


def event_line(event: EventRecord) -> Text:
    line = Text(f"  {format_time(event.time)}  ", style="dim")
    line.append("experiment" if event.run_id is None else f"run {event.run_id}")
    line.append(" ")
    line.append(event.kind, style=STATE_STYLES.get(event.kind, "bold"))
    line.append(f"  by {event.cause}", style="dim")
    if event.detail and event.detail.strip():
        first, *rest = event.detail.strip().splitlines()
        line.append(f": {first}" + (" …" if rest else ""))  # a traceback shows its first line only
    return line


def format_time(epoch: float) -> str:
    """'14:03:27' today, '11-24 14:03:27' on another day."""
    moment = time.localtime(epoch)
    same_day = time.strftime("%Y-%m-%d", moment) == time.strftime("%Y-%m-%d")
    return time.strftime("%H:%M:%S" if same_day else "%m-%d %H:%M:%S", moment)


def format_metric(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def status_json(
    folder: Path, runs: list[RunRecord], latest: dict[int, dict[str, float]], events: list[EventRecord]
) -> dict[str, Any]:
    """Plain JSON: NaN and infinite metrics become null, since JSON has no such numbers."""
    return {
        "experiment": folder.name,
        "folder": str(folder),
        "runs": [
            {
                **asdict(run),
                "progress": run.progress,
                "latest_metrics": {
                    key: finite_or_none(value) for key, value in latest.get(run.id, {}).items()
                },
            }
            for run in runs
        ],
        "events": [asdict(event) for event in events],
    }


def finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None
