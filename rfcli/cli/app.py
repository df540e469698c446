"""The `rf` command. Only Typer and Rich load here: each command imports what it needs when it runs."""

from __future__ import annotations

import atexit
import gc
import sys

import typer
from rich.console import Console
from rich.markup import escape

from rfcli.cli import compare, configs, cp, ctl, export, ls, plan, report, run, status, ui
from rfcli.engine.faults import PAUSED_EXIT, machine_fault
from rfcli.errors import UserError

app = typer.Typer(
    name="rf",
    help="Train many TRL fine-tuning configurations at once, chunk by chunk, and steer them live.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("plan")(plan.plan_command)
app.command("run")(run.run_command)
app.command("status")(status.status_command)
app.command("ui")(ui.ui_command)
app.command("ls")(ls.ls_command)
app.command("report")(report.report_command)
app.command("compare")(compare.compare_command)
app.command("export")(export.export_command)
app.command("configs")(configs.configs_command)
app.command("cp")(cp.cp_command)
app.add_typer(ctl.ctl_app)


@app.callback()
def rf() -> None:
    """Train many TRL fine-tuning configurations at once, chunk by chunk, and steer them live."""


def main(args: list[str] | None = None) -> None:
    """Entry point: a user error prints one clear line per problem and exits 2, never a traceback;
    so does a failure of the machine (a full disk), with exit status 75: try again once it is fixed."""
    atexit.register(leave_objects_to_the_system)
    try:
        app(args=args, prog_name="rf")
    except UserError as error:
        console = Console(stderr=True, highlight=False, soft_wrap=True)
        for line in error.lines():
            console.print(f"[bold red]error:[/] {escape(line)}")
        sys.exit(2)
    except Exception as error:
        fault = machine_fault(error)
        if fault is None:
            raise
        Console(stderr=True, highlight=False, soft_wrap=True).print(f"[bold red]error:[/] {escape(fault)}")
        sys.exit(PAUSED_EXIT)


def leave_objects_to_the_system() -> None:
    """Run last at exit (atexit runs the first registered last): Python's final garbage collections
    would walk every object the trainer stack made (torch, transformers, TRL, MLflow), 3 to 4 s on
    2 cores and far longer under load, after rf's last line. Frozen, they are left out of those
    collections; the process ends and the system frees them at once."""
    gc.freeze()
