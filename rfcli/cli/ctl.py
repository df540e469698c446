"""`rf ctl stop|resume|delete|clone|retry RUN_ID`: steer the runs of an experiment from any terminal.

The command goes into the experiment's store; `rf run` applies it at the run's next chunk
boundary (at once for a run that is not training) and records who asked.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from rfcli.cli.options import DirOption, ExperimentOption
from rfcli.cli.plan import OverridesArgument
from rfcli.config.errors import ConfigError
from rfcli.store.database import ExperimentStore, RecordNotFoundError, RunRecord
from rfcli.store.experiments import DEFAULT_EXPERIMENTS_DIR, STATE_DB, find_experiment

ctl_app = typer.Typer(
    name="ctl",
    help="Stop, resume, delete, clone or retry a run of an experiment while `rf run` trains it.",
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
    config = changed_config("clone", run_id, overrides or [], experiment, experiments_dir, warm)
    args = {"config": config, "overrides": overrides or [], "warm": warm}
    submit("clone", run_id, args, experiment, experiments_dir, wait)


@ctl_app.command("retry")
def retry_command(
    run_id: RunArgument,
    overrides: OverridesArgument = None,
    experiment: ExperimentOption = None,
    experiments_dir: DirOption = DEFAULT_EXPERIMENTS_DIR,
    wait: WaitOption = 3.0,
) -> None:
    """Train a failed run again from its last finished chunk, with optional key=value changes."""
    config = changed_config("retry", run_id, overrides or [], experiment, experiments_dir, warm=False)
    args = {"config": config, "overrides": overrides or []}
    submit("retry", run_id, args, experiment, experiments_dir, wait)


def changed_config(
    verb: str, run_id: int, overrides: list[str], experiment: str | None, folder_dir: Path, warm: bool
) -> dict[str, Any]:
    """The run's config with the overrides, validated like a plan; a clone keeps its parent's length,
    a retry its own. A command that can never apply is refused first, before the seconds that
    validation takes."""
    folder = find_experiment(experiment, search_dir=folder_dir)
    from rfcli.config.clone import clone_config

    with ExperimentStore(folder / STATE_DB) as store:
        try:
            run = store.run(run_id)
        except RecordNotFoundError as missing:
            raise ConfigError(str(missing)) from None
    refuse_if_final(verb, run, warm)
    return clone_config(run.config, run.max_steps if verb == "clone" else None, overrides, source=verb)


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
        if controller_running(store):
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


def controller_running(store: ExperimentStore) -> bool:
    pid = store.get_meta("controller_pid")
    if pid is None:
        return False
    try:
        os.kill(int(pid), 0)
    except (OSError, ValueError):
        return False
    return True
