"""Arguments and options that several commands share, declared once."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

ExperimentArgument = Annotated[
    str | None,
    typer.Argument(help="Experiment name; default: the one written to most recently.", show_default=False),
]
ExperimentOption = Annotated[
    str | None,
    typer.Option("--experiment", "-e", help="Experiment name; default: the one written to most recently."),
]
DirOption = Annotated[Path, typer.Option("--dir", help="Folder holding the experiments.")]
