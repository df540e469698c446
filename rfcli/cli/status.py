"""`rf status [EXPERIMENT]`: every run of an experiment, its state, progress and latest losses.

Reads only the experiment's SQLite store (no torch, no MLflow), so it answers at once from any
terminal while `rf run` trains.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.text import Text

from rfcli.cli.options import DirOption, ExperimentArgument
from rfcli.config.policy import POLICY_META, policy_from_json
from rfcli.config.schema import PolicyConfig
from rfcli.engine.commands import waiting_for
from rfcli.results.experiment import run_warnings
from rfcli.search.proposer import SEARCH_META, SearchSettings
from rfcli.store.database import (
    CommandRecord,
    EventRecord,
    ExperimentStore,
    ProposalRecord,
    RecordedDecision,
    RunRecord,
)
from rfcli.store.experiments import DEFAULT_EXPERIMENTS_DIR, find_experiment
from rfcli.store.layout import ExperimentLayout
from rfcli.ui.decisions import decisions_view
from rfcli.ui.tables import RECENT_EVENTS, format_time, notable_events, output_console, status_view

JsonOption = Annotated[bool, typer.Option("--json", help="Print runs and recent events as JSON.")]


def status_command(
    experiment: ExperimentArgument = None,
    experiments_dir: DirOption = DEFAULT_EXPERIMENTS_DIR,
    as_json: JsonOption = False,
) -> None:
    """Show every run of an experiment: state, chunk progress, step, latest losses, recent events."""
    folder = find_experiment(experiment, search_dir=experiments_dir)
    with ExperimentStore(ExperimentLayout(folder).state_db, create=False) as store:
        runs = store.runs()
        latest = {run.id: store.latest_metrics(run.id) for run in runs}
        events = notable_events(store, RECENT_EVENTS)
        warnings = run_warnings(store)
        policy = policy_from_json(store.get_meta(POLICY_META))
        decisions = store.decisions()
        waiting = store.pending_commands()
        answered = store.answered_commands(RECENT_EVENTS)
        stored_search = store.get_meta(SEARCH_META)
        proposals = store.proposals()
    search = SearchSettings.from_json(stored_search) if stored_search else None
    if as_json:
        document = status_json(folder, runs, latest, events)
        for run in document["runs"]:
            run["warning"] = warnings.get(run["id"])
        document["policy"] = policy_json(policy, decisions)
        document["commands"] = {
            "waiting": [asdict(command) for command in waiting],
            "answered": [asdict(command) for command in answered],
        }
        if search is not None:
            document["search"] = search_json(search, proposals)
        typer.echo(json.dumps(document, indent=2))
        return
    output_console().print(status_view(folder, runs, latest, events, warnings=warnings))
    if waiting:
        output_console().print(waiting_view(runs, waiting))
    if policy.name != "none" or decisions:
        output_console().print(decisions_view(policy, decisions))
    if search is not None:
        output_console().print(search_line(search, proposals), markup=False)


def waiting_view(runs: list[RunRecord], waiting: list[CommandRecord]) -> Text:
    """Each command given and not yet applied, with what it waits for (a refused one is an event)."""
    by_id = {run.id: run for run in runs}
    lines = [Text("waiting commands", style="bold")]
    for command in waiting:
        run = by_id.get(command.run_id)
        reason = waiting_for(run, command.id, waiting) if run is not None else "`rf run` refuses it"
        line = Text(f"  {format_time(command.created_at)}  {command.verb} run {command.run_id}")
        line.append(f"  by {command.cause}", style="dim")
        line.append(f": {reason}")
        lines.append(line)
    return Text("\n").join(lines)


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


def policy_json(policy: PolicyConfig, decisions: list[RecordedDecision]) -> dict[str, Any]:
    """The policy's settings and every decision it recorded, oldest first."""
    return {
        **asdict(policy),
        "decisions": [
            {
                **asdict(recorded.decision),
                "value": None if recorded.decision.value is None else finite_or_none(recorded.decision.value),
                "dry_run": recorded.dry_run,
                "time": recorded.time,
            }
            for recorded in decisions
        ],
    }


def search_line(search: SearchSettings, proposals: list[ProposalRecord]) -> str:
    """'search: tpe on eval_loss (min), 14 of 24 proposed, 8 at a time; run 14: TPE from ...'."""
    line = (
        f"search: {search.method} on {search.metric} ({search.mode}), {len(proposals)} of "
        f"{search.num_samples} proposed, {search.concurrent} at a time"
    )
    if proposals:
        latest = proposals[-1]
        made = f"run {latest.run_id}" if latest.run_id is not None else f"proposal {latest.number} (refused)"
        line += f"; latest: {made}, {latest.detail}"
    return line


def search_json(search: SearchSettings, proposals: list[ProposalRecord]) -> dict[str, Any]:
    """The search's settings and every proposal: what it was, how it was made, the run it created."""
    settings = {key: value for key, value in asdict(search).items() if key != "space"}
    return {
        **settings,
        "proposals": [
            {"number": p.number, "run_id": p.run_id, "params": p.params, "detail": p.detail, "error": p.error}
            for p in proposals
        ],
    }


def finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None
