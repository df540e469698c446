"""The runs table and event lines shared by `rf status` and the live view of `rf run`."""

from __future__ import annotations

import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console, Group
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from rfcli.config.schema import generation_metric_keys
from rfcli.engine.learning_signal import WARNING
from rfcli.engine.messages import ChunkProgress
from rfcli.engine.progress import LiveProgress, format_duration
from rfcli.results.experiment import run_warnings
from rfcli.results.settings import counted, differing_settings, settings_label, short_keys
from rfcli.store.database import RUN_STATES, EventRecord, ExperimentStore, RunRecord

LOG_WIDTH = 160
"""Without a terminal (a log, a pipe) Rich would assume 80 columns and squeeze the tables."""


def output_console() -> Console:
    return Console() if sys.stdout.isatty() else Console(width=LOG_WIDTH)


RECENT_EVENTS = 8
BAR_WIDTH = 4
SETTING_COLUMNS = 3
"""More settings that differ than this share one column, so the table stays readable at 80 columns."""
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
    """The latest events, newest first, without the scheduler's routine chunk hand-offs and the
    warnings (listed on their own, see `run_warnings`)."""
    events = store.events(limit=limit * 20)
    notable = [e for e in events if not (e.cause == "scheduler" and e.kind in ROUTINE) and e.kind != WARNING]
    return notable[:limit]


def status_view(
    folder: Path,
    runs: list[RunRecord],
    latest: dict[int, dict[str, float]],
    events: list[EventRecord],
    selected: int | None = None,
    progress: LiveProgress | None = None,
    warnings: dict[int, str] | None = None,
) -> Group:
    """The runs table, then every run's warning, then the recent events oldest first. Each run is
    named by the settings that set it apart; the `selected` run is marked; with `progress` (the live
    view) a training run also shows how far it is inside its chunk, and the title the experiment's
    estimated time left. A warning stays listed however many events came since."""
    settings = differing_settings({run.id: run.config for run in runs})
    keys = list(settings[runs[0].id]) if runs else []
    table = Table(
        title=table_title(folder, runs, progress),
        caption=state_counts(runs),
        box=box.SIMPLE_HEAD,
        padding=(0, 1, 0, 0),  # two spaces between columns, none at the edges: 80 columns suffice
        show_edge=False,
    )
    table.add_column("run", justify="right", no_wrap=True)
    columns = list(short_keys(keys).values()) if len(keys) <= SETTING_COLUMNS else ["settings"]
    for column in columns:
        table.add_column(column, overflow="fold")
    table.add_column("state", no_wrap=True)
    table.add_column("chunk", justify="right", no_wrap=True)
    if progress is not None:
        table.add_column("in chunk", no_wrap=True)
    table.add_column("step", justify="right", no_wrap=True)
    table.add_column("loss", justify="right", no_wrap=True)
    table.add_column("eval", justify="right", no_wrap=True)
    generated = generation_metric_keys(
        [run.config for run in runs], {key for metrics in latest.values() for key in metrics}
    )
    for key in generated:
        table.add_column(key, justify="right", no_wrap=True)
    table.add_column("it/s", justify="right", no_wrap=True)  # optimizer steps per second
    for run in runs:
        metrics = latest.get(run.id, {})
        live = progress.in_chunk.get(run.id) if progress is not None else None
        marked = run.id == selected
        cells: list[Any] = [
            f"{'▶ ' if marked else ''}{run.id}",
            *(
                settings[run.id].values()
                if len(keys) <= SETTING_COLUMNS
                else [settings_label(settings[run.id])]
            ),
            Text(run.state, style=STATE_STYLES.get(run.state, "")),
            f"{run.chunks_done}/{'?' if run.total_chunks is None else run.total_chunks}",
        ]
        if progress is not None:
            cells.append(in_chunk_bar(live) if live is not None else "")
        step = progress.step(run) if progress is not None else run.global_step
        cells += [
            step_text(step, run.max_steps),
            format_metric(metrics.get("loss")),
            format_metric(metrics.get("eval_loss")),
            *(format_metric(metrics.get(key)) for key in generated),
            format_metric(
                live.steps_per_second
                if live and live.steps_per_second
                else metrics.get("rf/steps_per_second")
            ),
        ]
        table.add_row(*cells, style="reverse bold" if marked else None)
    lines: list[Any] = [table if runs else Text(f"{folder.name}: no runs yet", style="dim")]
    if warnings:
        lines.append(Text("warnings", style="bold yellow"))
        lines.extend(Text(f"  run {run_id}: {text}") for run_id, text in sorted(warnings.items()))
    if events:
        lines.append(Text("recent events", style="bold"))
        lines.extend(event_line(event) for event in reversed(events))
    return Group(*lines)


def table_title(folder: Path, runs: list[RunRecord], progress: LiveProgress | None) -> str:
    title = f"{folder.name}: {counted(len(runs), 'run')}"
    eta = progress.eta_seconds(runs) if progress is not None else None
    return title if eta is None else f"{title} · about {format_duration(eta)} left"


def in_chunk_bar(live: ChunkProgress) -> Table:
    """A bar of the chunk in flight and its steps done, e.g. '━━━━╸━━━━ 5/8'."""
    length = max(1, live.chunk_end_step - live.chunk_start_step)
    done = min(length, max(0, live.step - live.chunk_start_step))
    cell = Table.grid(padding=(0, 1, 0, 0))
    cell.add_row(ProgressBar(total=length, completed=done, width=BAR_WIDTH), f"{done}/{length}")
    return cell


def step_text(step: int, max_steps: int | None) -> str:
    return str(step) if max_steps is None else f"{step}/{max_steps}"


def state_counts(runs: list[RunRecord]) -> str:
    counts = Counter(run.state.value for run in runs)
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


def experiment_view(
    store: ExperimentStore, folder: Path, selected: int | None = None, progress: LiveProgress | None = None
) -> Group:
    """The runs table and recent events of one experiment, read from its store."""
    runs = store.runs()
    latest = {run.id: store.latest_metrics(run.id) for run in runs}
    events = notable_events(store, RECENT_EVENTS)
    return status_view(folder, runs, latest, events, selected, progress, run_warnings(store))
