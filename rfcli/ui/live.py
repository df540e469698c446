"""The live table of `rf run`: every run's state, chunk, step, losses and speed, redrawn in place.

When the output is not a terminal (a log file, CI) it prints one plain line per event instead.
"""

from __future__ import annotations

import time
from pathlib import Path
from types import TracebackType

from rich.console import Console, Group
from rich.live import Live

from rfcli.store.database import ExperimentStore
from rfcli.ui.tables import experiment_view

REDRAW_SECONDS = 0.5


class LiveView:
    def __init__(self, store: ExperimentStore, folder: Path, console: Console) -> None:
        self.store = store
        self.folder = folder
        self.console = console
        self._live: Live | None = None
        self._drawn_at = 0.0

    def __enter__(self) -> LiveView:
        if self.console.is_terminal:
            self._live = Live(self.render(), console=self.console, auto_refresh=False, transient=False)
            self._live.__enter__()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self._live is not None:
            self._live.update(self.render(), refresh=True)
            self._live.__exit__(kind, error, trace)
        else:
            self.console.print(self.render())

    def announce(self, line: str) -> None:
        """A line above the table (or the line itself, without a terminal)."""
        self.console.print(line, highlight=False, markup=False)

    def refresh(self) -> None:
        if self._live is not None and time.monotonic() - self._drawn_at >= REDRAW_SECONDS:
            self._live.update(self.render(), refresh=True)
            self._drawn_at = time.monotonic()

    def render(self) -> Group:
        return experiment_view(self.store, self.folder)
