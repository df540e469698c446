"""`rf plan CONFIG [key=value ...]`: print the compiled run plan."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from rfcli.results.settings import format_value
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
) -> None:
    """Compile CONFIG into its run plan: one row per configuration, only the values that differ."""
    from rfcli.config.plan import compile_plan

    run_plan = compile_plan(config, overrides or [])
    if as_json:
        rows = [{"id": run.id, "fingerprint": run.fingerprint, "config": run.raw} for run in run_plan.runs]
        typer.echo(json.dumps(rows, indent=2, default=str))
        return
    console = output_console()
    console.print(plan_table(run_plan))
    if run_plan.search is not None:
        from rfcli.config.model_search import describe_search

        console.print(describe_search(run_plan.search, len(run_plan.runs)), markup=False)
    policy = run_plan.runs[0].config.policy
    if policy.name != "none":
        from rfcli.config.policy import describe_policy

        console.print(describe_policy(policy), markup=False)


def plan_table(run_plan: Any) -> Table:
    varying = run_plan.varying_keys()
    first = run_plan.runs[0].config
    table = Table(title=escape(f"{run_plan.name}: {first.trainer.upper()} run plan from {run_plan.source}"))
    table.add_column("run", justify="right")
    for key in varying:
        table.add_column(key, overflow="fold")
    for run in run_plan.runs:
        flat = run.flat()
        table.add_row(str(run.id), *(format_value(flat.get(key)) for key in varying))
    table.caption = totals_caption(run_plan)
    return table


def totals_caption(run_plan: Any) -> str:
    runs = run_plan.runs
    chunks = {run.config.num_chunks for run in runs}
    count = (
        f"{len(runs)} runs"
        if run_plan.search is None
        else f"the first {len(runs)} of {run_plan.search.num_samples} runs"
    )
    parts = [count, f"{'/'.join(map(str, sorted(chunks)))} chunks per epoch"]
    max_steps = [int(run.config.training.get("max_steps", -1)) for run in runs]
    if all(steps > 0 for steps in max_steps):
        parts.append(f"{sum(max_steps):,} training steps in all")
    else:
        parts.append("training steps depend on the data size")
    return " · ".join(parts)
