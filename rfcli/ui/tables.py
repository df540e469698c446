"""The runs table and event lines shared by `rf status` and the live view of `rf run`."""

from __future__ import annotations

import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from rfcli.config.schema import metric_key
from rfcli.store.database import RUN_STATES, EventRecord, ExperimentStore, RunRecord

LOG_WIDTH = 160
"""Without a terminal (a log, a pipe) Rich would assume 80 columns and squeeze the tables."""


def output_console() -> Console:
    return Console() if sys.stdout.isatty() else Console(width=LOG_WIDTH)


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
ROUTINE = ("running", "ready")
"""The scheduler moves runs between these at every chunk: recorded, but not news."""


def notable_events(store: ExperimentStore, limit: int) -> list[EventRecord]:
    """The latest events, newest first, without the scheduler's routine chunk hand-offs."""
    events = store.events(limit=limit * 20)
    notable = [e for e in events if not (e.cause == "scheduler" and e.kind in ROUTINE)]
    return notable[:limit]


def status_view(
    folder: Path,
    runs: list[RunRecord],
    latest: dict[int, dict[str, float]],
    events: list[EventRecord],
    selected: int | None = None,
) -> Group:
    """The runs table (the `selected` run highlighted), then the recent events oldest first."""
    table = Table(title=f"{folder.name}: {len(runs)} runs", caption=state_counts(runs))
    table.add_column("run", justify="right")
    table.add_column("name", overflow="ellipsis", no_wrap=True, max_width=32)
    table.add_column("state")
    table.add_column("chunks", justify="right")
    table.add_column("step", justify="right")
    table.add_column("loss", justify="right")
    table.add_column("eval loss", justify="right")
    generated = generation_metric_keys(runs, latest)
    for key in generated:
        table.add_column(key, justify="right")
    table.add_column("steps/s", justify="right")
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
            *(format_metric(metrics.get(key)) for key in generated),
            format_metric(metrics.get("rf/steps_per_second")),
            style="reverse" if run.id == selected else None,
        )
    lines: list[Any] = [table if runs else Text(f"{folder.name}: no runs yet", style="dim")]
    if events:
        lines.append(Text("recent events", style="bold"))
        lines.extend(event_line(event) for event in reversed(events))
    return Group(*lines)


def generation_metric_keys(runs: list[RunRecord], latest: dict[int, dict[str, float]]) -> list[str]:
    """The results of the runs' `eval.metrics` logged so far, in config order: a column each."""
    keys: list[str] = []
    for run in runs:
        for spec in (run.config.get("eval") or {}).get("metrics") or []:
            prefix = metric_key(spec)
            logged = (key for key in latest.get(run.id, {}) if key == prefix or key.startswith(f"{prefix}/"))
            keys.extend(key for key in logged if key not in keys)
    return keys


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


def experiment_view(store: ExperimentStore, folder: Path, selected: int | None = None) -> Group:
    """The runs table and recent events of one experiment, read from its store."""
    runs = store.runs()
    latest = {run.id: store.latest_metrics(run.id) for run in runs}
    return status_view(folder, runs, latest, notable_events(store, RECENT_EVENTS), selected)
