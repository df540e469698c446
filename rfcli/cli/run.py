"""`rf run CONFIG [key=value ...]`: compile the plan and train every run, chunk by chunk."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from rfcli.cli.plan import ConfigArgument, OverridesArgument

if TYPE_CHECKING:
    from rich.console import Console

    from rfcli.config.plan import RunPlan

WorkersOption = Annotated[
    int | None,
    typer.Option("--workers", min=1, help="CPU worker processes (default: one per GPU, or 1 without a GPU)."),
]


def run_command(
    config: ConfigArgument, overrides: OverridesArgument = None, workers: WorkersOption = None
) -> None:
    """Train every configuration of CONFIG together, chunk by chunk, with a live table.

    Keys in the table: up/down select a run; s stop, r resume, d delete, c clone, w warm clone;
    q leaves: the chunks in flight finish, then rf run exits and training pauses. Running it
    again on the same experiment attaches to it and resumes every run from its last finished
    chunk. Ctrl-C stops at once; the chunks in flight are trained again on the next `rf run`.
    """
    from rfcli.config.plan import compile_plan
    from rfcli.engine.experiment import make_folder, named_folder
    from rfcli.engine.preflight import check_inputs
    from rfcli.store.layout import ExperimentLayout
    from rfcli.store.lock import ExperimentLock
    from rfcli.ui.tables import output_console

    console = output_console()
    named = named_folder(config, overrides or [])
    lock = ExperimentLock(ExperimentLayout(named).lock_file, "rf run") if named is not None else None
    try:
        if lock is not None and lock.path.parent.is_dir():
            lock.acquire()  # a second `rf run` is refused before its plan compiles or data loads
        run_plan = compile_plan(config, overrides or [])
        check_inputs(run_plan)  # before the folder is made: a bad input leaves nothing behind
        folder = make_folder(run_plan)
        if lock is None or not lock.held:
            lock = ExperimentLock(ExperimentLayout(folder).lock_file, "rf run")
            lock.acquire()
        train(run_plan, workers, console)
    finally:
        if lock is not None:
            lock.release()


def train(run_plan: RunPlan, workers: int | None, console: Console) -> None:
    """Open the experiment (this process holds its lock) and train until no run can go on."""
    from rfcli.engine.control import mirror_deferred
    from rfcli.engine.controller import Controller
    from rfcli.engine.experiment import open_experiment
    from rfcli.engine.pool import WorkerPool, visible_devices
    from rfcli.ui.live import LiveView
    from rfcli.ui.tables import experiment_view

    experiment = open_experiment(run_plan)
    mirror_deferred(experiment.store, experiment.tracker)
    console.print(f"experiment [bold]{escape(run_plan.name)}[/] in {escape(str(experiment.folder))}")
    if not experiment.has_work():
        console.print(experiment_view(experiment.store, experiment.folder))
        console.print("nothing left to train: every run is completed, stopped, failed or deleted")
        return
    pool = WorkerPool(experiment.folder, visible_devices(workers))
    with LiveView(experiment.store, experiment.folder, console) as view:
        controller = Controller(experiment.store, experiment.tracker, pool, view.announce)
        view.progress = controller.progress

        def refresh() -> None:
            view.refresh()
            controller.leaving = controller.leaving or view.leave_requested

        try:
            controller.run(refresh)
        except KeyboardInterrupt:
            view.announce("interrupted: runs in flight resume from their last chunk on the next `rf run`")
        finally:
            controller.shutdown()
    failed = [run.id for run in experiment.store.runs() if run.state == "failed"]
    if failed:
        console.print(f"[red]failed runs: {', '.join(map(str, failed))}[/] (see `rf status`)")
        raise typer.Exit(1)
