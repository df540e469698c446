"""`rf plan CONFIG [key=value ...]`: print the compiled run plan."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from rfcli.errors import UserError
from rfcli.results.settings import counted, format_value
from rfcli.ui.tables import output_console

ConfigArgument = Annotated[
    Path, typer.Argument(help="The experiment YAML (see configs/).", show_default=False)
]
OverridesArgument = Annotated[
    list[str] | None,
    typer.Argument(
        help="Dotted overrides, e.g. training.learning_rate=3e-4 num_chunks=8.", show_default=False
    ),
]


def plan_command(
    config: ConfigArgument,
    overrides: OverridesArgument = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print every fully resolved run config.")] = False,
    estimate: Annotated[
        bool,
        typer.Option(
            "--estimate",
            help="What each run costs: parameters, memory, tokens, optimizer steps (no weights loaded).",
        ),
    ] = False,
    calibrate: Annotated[
        bool,
        typer.Option("--calibrate", help="With --estimate: time a few real steps here, for the wall time."),
    ] = False,
    workers: Annotated[
        int | None,
        typer.Option("--workers", min=1, help="The workers `rf run` will have (as its --workers)."),
    ] = None,
) -> None:
    """Compile CONFIG into its run plan: one row per configuration, only the values that differ;
    with --estimate, what each run and the sweep will cost."""
    from rfcli.config.plan import compile_plan

    if as_json and (estimate or calibrate):
        raise UserError("--json prints every run's config and --estimate what they cost: give one of them")
    started = time.monotonic()
    run_plan = compile_plan(config, overrides or [])
    if estimate or calibrate:
        print_estimate(run_plan, calibrate, workers, started)
        return
    if as_json:
        rows = [{"id": run.id, "fingerprint": run.fingerprint, "config": run.raw} for run in run_plan.runs]
        typer.echo(json.dumps(rows, indent=2, default=str))
        return
    console = output_console()
    console.print(plan_table(run_plan))
    print_notes(console, run_plan.notes)
    if run_plan.search is not None:
        from rfcli.config.model_search import describe_search

        console.print(describe_search(run_plan.search, len(run_plan.runs)), markup=False)
    policy = run_plan.runs[0].config.policy
    if policy.name != "none":
        from rfcli.config.policy import describe_policy

        console.print(describe_policy(policy), markup=False)


def print_notes(console: Console, notes: tuple[str, ...]) -> None:
    """What works differently on this machine than the config may expect: one line each."""
    for note in notes:
        console.print(f"[yellow]note:[/] {escape(note)}")


def print_estimate(run_plan: Any, calibrate: bool, workers: int | None, started: float) -> None:
    """Check the inputs as `rf run` does (so start-up is timed the same way), then estimate."""
    from rfcli.engine.preflight import check_inputs
    from rfcli.estimate.plan_estimate import estimate_plan
    from rfcli.gpus import worker_devices
    from rfcli.ui.estimate import estimate_view

    check_inputs(run_plan)
    count = len(worker_devices(workers))
    estimated = estimate_plan(run_plan, count, calibrate, startup_seconds=time.monotonic() - started)
    output_console().print(estimate_view(run_plan, estimated))


def plan_table(run_plan: Any) -> Table:
    """One row per run with the values that differ; a plan of one run lists its settings instead,
    since nothing differs. At least as wide as its title and caption, so a narrow table does not
    fold them."""
    first = run_plan.runs[0].config
    title = f"{run_plan.name}: {first.trainer.upper()} run plan from {run_plan.source}"
    caption = totals_caption(run_plan)
    table = Table(title=escape(title), caption=escape(caption), min_width=max(len(title), len(caption)))
    if len(run_plan.runs) == 1:
        table.add_column("setting of run 1")
        table.add_column("value", overflow="fold")
        for key, value in run_plan.runs[0].flat().items():
            if value != {}:  # a section left empty (`search: {}`) says nothing
                table.add_row(escape(key), escape(format_value(value)))
        return table
    varying = run_plan.varying_keys()
    table.add_column("run", justify="right")
    for key in varying:
        table.add_column(key, overflow="fold")
    for run in run_plan.runs:
        flat = run.flat()
        table.add_row(str(run.id), *(format_value(flat.get(key)) for key in varying))
    return table


def totals_caption(run_plan: Any) -> str:
    runs = run_plan.runs
    chunks = sorted({run.config.num_chunks for run in runs})
    per_epoch = counted(chunks[0], "chunk") if len(chunks) == 1 else f"{'/'.join(map(str, chunks))} chunks"
    count = (
        counted(len(runs), "run")
        if run_plan.search is None
        else f"the first {len(runs)} of {run_plan.search.num_samples} runs"
    )
    parts = [count, f"{per_epoch} per epoch"]
    max_steps = [int(run.config.training.get("max_steps", -1)) for run in runs]
    if all(steps > 0 for steps in max_steps):
        parts.append(f"{counted(sum(max_steps), 'training step')} in all")
    else:
        parts.append("training steps depend on the data size")
    return " · ".join(parts)
