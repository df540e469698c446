"""`rf configs`: the sweeps that ship with rf, to start from a copy (`rf cp`) rather than a blank page."""

from __future__ import annotations

from rich.markup import escape
from rich.table import Table

from rfcli.config.shipped import shipped_configs, shipped_folder
from rfcli.ui.tables import output_console


def configs_command() -> None:
    """List the shipped sweeps: trainer, model, runs, what each shows and how long it took here."""
    configs = shipped_configs()
    table = Table(title=escape(f"shipped configs in {shipped_folder()}"))
    for column in ("config", "trainer", "model", "runs", "what it shows", "wall time here"):
        table.add_column(column, overflow="fold")
    for config in configs:
        table.add_row(
            config.name,
            config.trainer,
            escape(config.model),
            str(config.runs),
            escape(config.summary),
            escape(config.wall_time or "-"),
        )
    console = output_console()
    console.print(table)
    console.print("copy one to start from: rf cp NAME MY-SWEEP.yaml", markup=False, highlight=False)
