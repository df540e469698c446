"""`rf run CONFIG [key=value ...]`: compile the plan and train every run, chunk by chunk."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from rfcli.cli.options import DirOption, ExperimentOption
from rfcli.cli.plan import OverridesArgument, print_notes
from rfcli.errors import UserError
from rfcli.store.experiments import DEFAULT_EXPERIMENTS_DIR

if TYPE_CHECKING:
    from rich.console import Console

    from rfcli.config.plan import RunPlan
    from rfcli.engine.pool import Pool


INTERRUPTED_EXIT = 130
"""What a shell reports for a command ended by Ctrl-C (128 + SIGINT)."""


class Backend(StrEnum):
    local = "local"
    ray = "ray"


ConfigArgument = Annotated[
    Path | None,
    typer.Argument(
        help="The experiment YAML (see configs/); leave it out with -e NAME to continue an experiment.",
        show_default=False,
    ),
]
WorkersOption = Annotated[
    int | None,
    typer.Option(
        "--workers",
        min=1,
        help="Workers: with GPUs, one on each of the first N (default: all); else N on the CPU (default 1).",
    ),
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
    config: ConfigArgument = None,
    overrides: OverridesArgument = None,
    workers: WorkersOption = None,
    backend: BackendOption = Backend.local,
    address: AddressOption = None,
    experiment: ExperimentOption = None,
    experiments_dir: DirOption = DEFAULT_EXPERIMENTS_DIR,
) -> None:
    """Train every configuration of CONFIG together, chunk by chunk, with a live table; with
    -e NAME and no CONFIG, continue experiment NAME from the plan it stores (clones included).

    Keys in the table: up/down select a run; s stop, r resume, d delete, c clone, w warm clone;
    q leaves: the chunks in flight finish, then rf run exits and training pauses. Running it
    again on the same experiment attaches to it and resumes every run from its last finished
    chunk. Ctrl-C stops at once; the chunks in flight are trained again on the next `rf run`.
    """
    from rfcli.config.plan import compile_plan
    from rfcli.engine.experiment import make_folder, named_folder, planned_runs, stored_plan
    from rfcli.engine.preflight import check_inputs
    from rfcli.store.experiments import find_experiment
    from rfcli.store.layout import ExperimentLayout
    from rfcli.store.lock import ExperimentLock
    from rfcli.ui.tables import output_console

    check_backend(backend, address)
    check_plan_source(config, overrides or [], experiment)
    console = output_console()
    runs = planned_runs(config, overrides or []) if config is not None else None
    workers = bounded_workers(workers, runs, console, on_this_machine=backend is Backend.local)
    if experiment is not None:
        named: Path | None = find_experiment(experiment, search_dir=experiments_dir)
    else:
        assert config is not None
        named = named_folder(config, overrides or [])
    lock = ExperimentLock(ExperimentLayout(named).lock_file, "rf run") if named is not None else None
    pool: Pool | None = None
    try:
        if lock is not None and lock.path.parent.is_dir():
            lock.acquire()  # a second `rf run` is refused before its plan compiles or data loads
        if named is not None and backend is Backend.local:
            # Its imports (seconds) overlap the plan's; it writes nothing until it gets a chunk.
            pool = start_workers(named, backend, workers, address)
        if experiment is not None:
            assert named is not None
            run_plan = stored_plan(named)
        else:
            assert config is not None
            run_plan = compile_plan(config, overrides or [])
        check_inputs(run_plan)  # before the folder is made: a bad input leaves nothing behind
        print_notes(console, run_plan.notes)
        folder = make_folder(run_plan)
        if lock is None or not lock.held:
            lock = ExperimentLock(ExperimentLayout(folder).lock_file, "rf run")
            lock.acquire()
        if pool is None or pool.experiment != folder:
            if pool is not None:
                pool.shutdown(timeout=0)
            pool = start_workers(folder, backend, workers, address)  # a Ray actor checks it sees the folder
        train(run_plan, console, pool)
    except BaseException:
        if pool is not None:
            pool.shutdown(timeout=0)
        raise
    finally:
        if lock is not None:
            lock.release()


def train(run_plan: RunPlan, console: Console, pool: Pool) -> None:
    """Open the experiment (this process holds its lock) and train on `pool` until no run can go on."""
    from rfcli.engine.controller import Controller
    from rfcli.engine.experiment import open_experiment
    from rfcli.engine.faults import PAUSED_EXIT, describe_pause
    from rfcli.engine.mlflow_mirror import MlflowMirror
    from rfcli.ui.live import LiveView
    from rfcli.ui.tables import experiment_view

    experiment = open_experiment(run_plan)
    MlflowMirror(experiment.store, experiment.tracker).mirror_deferred()
    console.print(f"experiment [bold]{escape(run_plan.name)}[/] in {escape(str(experiment.folder))}")
    if not experiment.has_work():
        pool.shutdown(timeout=0)
        console.print(experiment_view(experiment.store, experiment.folder))
        console.print("nothing left to train: every run is completed, stopped, failed or deleted")
        return
    with LiveView(experiment.store, experiment.folder, console) as view:
        controller = Controller(experiment.store, experiment.tracker, pool, view.announce)
        view.progress = controller.progress

        def refresh() -> None:
            view.refresh()
            controller.leaving = controller.leaving or view.leave_requested

        interrupted = False
        try:
            controller.run(refresh)
        except KeyboardInterrupt:
            interrupted = True
            view.announce("interrupted: runs in flight resume from their last chunk on the next `rf run`")
        finally:
            controller.shutdown(interrupted)
    if controller.paused is not None:
        console.print(f"[yellow]{escape(describe_pause(controller.paused))}[/]")
        raise typer.Exit(PAUSED_EXIT)
    failed = [run.id for run in experiment.store.runs() if run.state == "failed"]
    if failed:
        console.print(f"[red]failed runs: {', '.join(map(str, failed))}[/] (see `rf status`)")
    if interrupted or failed:
        raise typer.Exit(INTERRUPTED_EXIT if interrupted else 1)


def check_plan_source(config: Path | None, overrides: list[str], experiment: str | None) -> None:
    """A plan comes from a file (with its overrides), or from the store of the experiment -e names."""
    if experiment is None and config is None:
        raise UserError("give the experiment file (rf run CONFIG), or -e NAME to continue an experiment")
    if experiment is not None and (config is not None or overrides):
        given = "CONFIG" if config is not None else "overrides"
        raise UserError(
            f"-e {experiment} continues the plan that experiment stores, so it takes no {given}; "
            "to train another plan, give its file (with a new name) instead of -e"
        )


def check_backend(backend: Backend, address: str | None) -> None:
    if backend is Backend.ray:
        from rfcli.engine.ray_pool import check_address, require_ray

        require_ray()
        if address is not None:
            check_address(address)
    elif address is not None:
        raise UserError("--address names a Ray cluster: it needs --backend ray")


def bounded_workers(
    workers: int | None, runs: int | None, console: Console, on_this_machine: bool
) -> int | None:
    """`--workers N` beyond what can train at once: at most one worker per run, and on this
    machine's CPU one per core (more would take turns on the same cores, each holding a copy of the
    model). Said in one line; GPUs bound it themselves (`worker_devices` refuses more than there are)."""
    import os

    from rfcli.gpus import driver_present
    from rfcli.results.settings import counted

    if workers is None:
        return None
    limits = [] if runs is None else [(runs, f"the plan has {counted(runs, 'run')}")]
    if on_this_machine and not driver_present():
        cores = os.cpu_count() or 1
        limits.append((cores, f"this machine has {counted(cores, 'CPU core')}"))
    bound, why = min(limits, default=(workers, ""))
    if workers <= bound:
        return workers
    console.print(f"[yellow]note:[/] --workers {workers}: {why}, so rf starts {counted(bound, 'worker')}")
    return bound


def start_workers(folder: Path, backend: Backend, workers: int | None, address: str | None) -> Pool:
    if backend is Backend.ray:
        from rfcli.engine.ray_pool import RayWorkerPool

        return RayWorkerPool(folder, workers, address)
    from rfcli.engine.pool import WorkerPool
    from rfcli.gpus import worker_devices

    return WorkerPool(folder, worker_devices(workers))
