"""`rf run CONFIG [key=value ...]`: compile the plan and train every run, chunk by chunk."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from rfcli.cli.plan import ConfigArgument, OverridesArgument

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
    from rfcli.engine.controller import Controller
    from rfcli.engine.experiment import open_experiment, preflight_data
    from rfcli.engine.pool import WorkerPool, visible_devices
    from rfcli.store.experiments import experiment_folder
    from rfcli.ui.live import LiveView
    from rfcli.ui.tables import experiment_view, output_console

    console = output_console()
    run_plan = compile_plan(config, overrides or [])
    # Workers start first: their imports and model loading overlap the data check and MLflow's set-up.
    first = run_plan.runs[0].config
    pool = WorkerPool(experiment_folder(Path(first.experiments_dir), first.name), visible_devices(workers))
    try:
        preflight_data(run_plan)
        experiment = open_experiment(run_plan)
    except BaseException:
        pool.shutdown(timeout=0)
        raise
    console.print(f"experiment [bold]{escape(run_plan.name)}[/] in {escape(str(experiment.folder))}")
    if not experiment.has_work():
        pool.shutdown(timeout=0)
        console.print(experiment_view(experiment.store, experiment.folder))
        console.print("nothing left to train: every run is completed, stopped, failed or deleted")
        return
    with LiveView(experiment.store, experiment.folder, console) as view:
        controller = Controller(experiment.store, experiment.tracker, pool, view.announce)

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
