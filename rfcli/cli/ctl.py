"""`rf ctl stop|resume|delete|clone RUN_ID`: steer the runs of an experiment from any terminal.

The command goes into the experiment's store; `rf run` applies it at the run's next chunk
boundary (at once for a run that is not training) and records who asked.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer

from rfcli.cli.options import DirOption, ExperimentOption
from rfcli.cli.plan import OverridesArgument
from rfcli.store.database import ExperimentStore, RunRecord
from rfcli.store.experiments import DEFAULT_EXPERIMENTS_DIR, STATE_DB, find_experiment
from rfcli.store.lock import LOCK_FILE, ExperimentLock

ctl_app = typer.Typer(
    name="ctl",
    help="Stop, resume, delete or clone a run of an experiment while `rf run` trains it.",
    no_args_is_help=True,
)

RunArgument = Annotated[int, typer.Argument(help="The run id, as `rf status` shows it.", show_default=False)]
WaitOption = Annotated[float, typer.Option("--wait", help="Seconds to wait for `rf run` to apply it.")]
CAUSE = "rf ctl"


@ctl_app.command("stop")
def stop_command(
    run_id: RunArgument,
    experiment: ExperimentOption = None,
    experiments_dir: DirOption = DEFAULT_EXPERIMENTS_DIR,
    wait: WaitOption = 3.0,
) -> None:
    """Stop a run after the chunk it is on; its state is kept for `rf ctl resume`."""
    submit("stop", run_id, {}, experiment, experiments_dir, wait)


@ctl_app.command("resume")
def resume_command(
    run_id: RunArgument,
    experiment: ExperimentOption = None,
    experiments_dir: DirOption = DEFAULT_EXPERIMENTS_DIR,
    wait: WaitOption = 3.0,
) -> None:
    """Return a stopped run to the schedule at its next chunk."""
    submit("resume", run_id, {}, experiment, experiments_dir, wait)


@ctl_app.command("delete")
def delete_command(
    run_id: RunArgument,
    experiment: ExperimentOption = None,
    experiments_dir: DirOption = DEFAULT_EXPERIMENTS_DIR,
    wait: WaitOption = 3.0,
) -> None:
    """Stop a run and remove its checkpoints; it can no longer be resumed or cloned warm."""
    submit("delete", run_id, {}, experiment, experiments_dir, wait)


@ctl_app.command("clone")
def clone_command(
    run_id: RunArgument,
    overrides: OverridesArgument = None,
    warm: Annotated[
        bool, typer.Option("--warm", help="Start from the run's current weights and step.")
    ] = False,
    experiment: ExperimentOption = None,
    experiments_dir: DirOption = DEFAULT_EXPERIMENTS_DIR,
    wait: WaitOption = 3.0,
) -> None:
    """A new run from RUN_ID's config with the given key=value changes (validated like a plan)."""
    folder = find_experiment(experiment, search_dir=experiments_dir)
    from rfcli.config.clone import clone_config

    with ExperimentStore(folder / STATE_DB) as store:
        parent = store.run(run_id)
    refuse_if_final("clone", parent, warm)  # before the seconds a clone's validation takes
    config = clone_config(parent.config, parent.max_steps, overrides or [])
    args = {"config": config, "overrides": overrides or [], "warm": warm}
    submit("clone", run_id, args, experiment, experiments_dir, wait)


def submit(
    verb: str, run_id: int, args: dict[str, Any], experiment: str | None, folder_dir: Path, wait: float
) -> None:
    folder = find_experiment(experiment, search_dir=folder_dir)
    with ExperimentStore(folder / STATE_DB) as store:
        refuse_if_final(verb, store.run(run_id), bool(args.get("warm")))
        command_id = store.add_command(verb, run_id, args, cause=CAUSE)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            command = store.command(command_id)
            if command.outcome == "applied":
                typer.echo(f"{verb} run {run_id}: applied")
                return
            if command.outcome == "refused":
                typer.echo(f"{verb} run {run_id}: refused: {command.error}", err=True)
                raise typer.Exit(1)
            time.sleep(0.1)
        if ExperimentLock(folder / LOCK_FILE, CAUSE).holder() is not None:
            typer.echo(f"{verb} run {run_id}: queued; it applies when run {run_id}'s chunk in flight ends")
        else:
            typer.echo(
                f"{verb} run {run_id}: queued; `rf run` is not running, it applies when rf run resumes"
            )


def refuse_if_final(verb: str, run: RunRecord, warm: bool) -> None:
    """A command that can never apply (the run ended for good) is refused at once, not queued."""
    from rfcli.engine.control import final_refusal

    refusal = final_refusal(verb, run, warm)
    if refusal is not None:
        typer.echo(f"{verb} run {run.id}: refused: {refusal}", err=True)
        raise typer.Exit(1)
