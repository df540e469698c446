"""`rf ctl stop|resume|delete|clone|retry RUN_ID`: steer the runs of an experiment from any terminal.

The command goes into the experiment's store. While `rf run` trains the experiment, it applies
the command at the run's next chunk boundary (at once for a run that is not training); with no
`rf run` attached, `rf ctl` takes the experiment's lock and applies it itself, at once. A command
that cannot apply is refused with exit status 2.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from rfcli.cli.options import DirOption, ExperimentOption
from rfcli.cli.plan import OverridesArgument
from rfcli.engine.commands import CommandRefused, submit, waiting_for
from rfcli.store.database import CommandRecord, ExperimentStore, RunRecord
from rfcli.store.experiments import DEFAULT_EXPERIMENTS_DIR, find_experiment
from rfcli.store.layout import ExperimentLayout
from rfcli.store.lock import ExperimentLock

ctl_app = typer.Typer(
    name="ctl",
    help="Stop, resume, delete, clone or retry a run of an experiment, while `rf run` trains it or not.",
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
    send("stop", run_id, experiment, experiments_dir, wait)


@ctl_app.command("resume")
def resume_command(
    run_id: RunArgument,
    experiment: ExperimentOption = None,
    experiments_dir: DirOption = DEFAULT_EXPERIMENTS_DIR,
    wait: WaitOption = 3.0,
) -> None:
    """Return a stopped run to the schedule at its next chunk."""
    send("resume", run_id, experiment, experiments_dir, wait)


@ctl_app.command("delete")
def delete_command(
    run_id: RunArgument,
    experiment: ExperimentOption = None,
    experiments_dir: DirOption = DEFAULT_EXPERIMENTS_DIR,
    wait: WaitOption = 3.0,
) -> None:
    """Stop a run and remove its checkpoints; it can no longer be resumed or cloned warm."""
    send("delete", run_id, experiment, experiments_dir, wait)


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
    send("clone", run_id, experiment, experiments_dir, wait, overrides or [], warm)


@ctl_app.command("retry")
def retry_command(
    run_id: RunArgument,
    overrides: OverridesArgument = None,
    experiment: ExperimentOption = None,
    experiments_dir: DirOption = DEFAULT_EXPERIMENTS_DIR,
    wait: WaitOption = 3.0,
) -> None:
    """Train a failed run again from its last finished chunk, with optional key=value changes."""
    send("retry", run_id, experiment, experiments_dir, wait, overrides or [])


def send(
    verb: str,
    run_id: int,
    experiment: str | None,
    experiments_dir: Path,
    wait: float,
    overrides: Sequence[str] = (),
    warm: bool = False,
) -> None:
    layout = ExperimentLayout(find_experiment(experiment, search_dir=experiments_dir))
    with ExperimentStore(layout.state_db, create=False) as store:
        try:
            command_id = submit(store, verb, run_id, cause=CAUSE, overrides=overrides, warm=warm)
        except CommandRefused as refusal:
            refuse(verb, run_id, str(refusal))
        command, applied_here = outcome(store, layout, command_id, wait)
        made = store.run(command.made_run) if command.made_run is not None else None
        waiting = waiting_for(store.run(run_id), command_id, store.pending_commands())
    if made is not None:
        typer.echo(f"{verb} run {run_id}: applied: {made_line(made, layout, experiments_dir, applied_here)}")
    elif command.outcome == "applied":
        typer.echo(f"{verb} run {run_id}: applied")
    elif command.outcome == "refused":
        refuse(verb, run_id, command.error or "")
    else:
        typer.echo(f"{verb} run {run_id}: queued; {waiting}")


def made_line(made: RunRecord, layout: ExperimentLayout, experiments_dir: Path, applied_here: bool) -> str:
    """'made run 5 (clone of 3 training.learning_rate=0.001)' and who trains it: the `rf run`
    attached, or the command that continues the experiment."""
    _, _, apart = made.name.partition(" ")
    where = "" if experiments_dir == DEFAULT_EXPERIMENTS_DIR else f" --dir {experiments_dir}"
    trains = f"`rf run -e {layout.folder.name}{where}` trains it" if applied_here else "rf run trains it now"
    return f"made run {made.id}" + (f" ({apart})" if apart else "") + f"; {trains}"


def outcome(
    store: ExperimentStore, layout: ExperimentLayout, command_id: int, wait: float
) -> tuple[CommandRecord, bool]:
    """The command once applied or refused, or still pending after `wait` seconds of a busy
    `rf run`, and whether this process applied it (no `rf run` holds the experiment): whenever none
    does, apply every pending command here."""
    from rfcli.engine.control import CommandApplier

    lock = ExperimentLock(layout.lock_file, CAUSE)
    deadline = time.monotonic() + wait
    applied_here = False
    while True:
        command = store.command(command_id)
        if not command.pending:
            return command, applied_here
        if lock.try_acquire():
            try:
                CommandApplier(store, layout, on_change=None).apply_pending(busy=())
                applied_here = True
            finally:
                lock.release()
            continue
        if time.monotonic() >= deadline:
            return command, applied_here
        time.sleep(0.1)


def refuse(verb: str, run_id: int, reason: str) -> NoReturn:
    typer.echo(f"{verb} run {run_id}: refused: {reason}", err=True)
    raise typer.Exit(2)
