"""`rf cp NAME DEST`: copy a shipped sweep to edit; the copy names its own experiment and command."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rfcli.config.shipped import copied_text, copy_destination, shipped_config


def cp_command(
    name: Annotated[
        str, typer.Argument(help="A shipped config, as `rf configs` lists it.", show_default=False)
    ],
    dest: Annotated[
        Path, typer.Argument(help="The new file (or a folder to put it in).", show_default=False)
    ],
) -> None:
    """Copy shipped config NAME to DEST, its recipes' module names as they are: DEST's experiment is
    named after DEST and its header's commands run DEST. Never overwrites."""
    config = shipped_config(name)
    target = copy_destination(config, dest)
    target.write_text(copied_text(config, str(target), target.stem), encoding="utf-8")
    typer.echo(f"copied {config.name} to {target} (experiment '{target.stem}'); run it with: rf run {target}")
