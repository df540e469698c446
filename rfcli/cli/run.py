"""`rf run CONFIG [key=value ...]`: compile the plan and train every run, chunk by chunk."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from rfcli.cli.plan import ConfigArgument, OverridesArgument
from rfcli.config.errors import ConfigError

if TYPE_CHECKING:
    from rfcli.engine.pool import Pool


class Backend(StrEnum):
    local = "local"
    ray = "ray"


WorkersOption = Annotated[
    int | None,
    typer.Option("--workers", min=1, help="CPU workers (default: one per GPU, or 1 without a GPU)."),
]
BackendOption = Annotated[
    Backend,
    typer.Option(
        "--backend", help="local: worker processes here; ray: Ray actors, here or on a cluster (--address)."
    ),
]
AddressOption = Annotated[
    str | None,
    typer.Option(
        "--address",
        help="The Ray cluster to run on ('auto': the one this node is in); default: a Ray for this machine.",
    ),
]


def run_command(
    config: ConfigArgument,
    overrides: OverridesArgument = None,
    workers: WorkersOption = None,
    backend: BackendOption = Backend.local,
    address: AddressOption = None,
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
    from rfcli.ui.live import LiveView
    from rfcli.ui.tables import experiment_view, output_console

    check_backend(backend, address)
    console = output_console()
    run_plan = compile_plan(config, overrides or [])
    preflight_data(run_plan)
    experiment = open_experiment(run_plan)
    console.print(f"experiment [bold]{escape(run_plan.name)}[/] in {escape(str(experiment.folder))}")
    if not experiment.has_work():
        console.print(experiment_view(experiment.store, experiment.folder))
        console.print("nothing left to train: every run is completed, stopped, failed or deleted")
        return
    pool = start_workers(experiment.folder, backend, workers, address)
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


def check_backend(backend: Backend, address: str | None) -> None:
    if backend is Backend.ray:
        from rfcli.engine.ray_pool import require_ray

        require_ray()
    elif address is not None:
        raise ConfigError("--address names a Ray cluster: it needs --backend ray")


def start_workers(folder: Path, backend: Backend, workers: int | None, address: str | None) -> Pool:
    if backend is Backend.ray:
        from rfcli.engine.ray_pool import RayWorkerPool

        return RayWorkerPool(folder, workers, address)
    from rfcli.engine.pool import WorkerPool, visible_devices

    return WorkerPool(folder, visible_devices(workers))
