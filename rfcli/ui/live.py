"""The live table of `rf run`: every run's state, chunk, step, losses and speed, redrawn in place,
steered by keys (see `steering.py`).

When the output is not a terminal (a log file, CI) it prints one plain line per event instead.
"""

from __future__ import annotations

import time
from pathlib import Path
from types import TracebackType

from rich.console import Console, Group
from rich.live import Live

from rfcli.config.errors import ConfigError
from rfcli.engine.commands import CommandRefused, submit
from rfcli.engine.progress import LiveProgress
from rfcli.store.database import ExperimentStore
from rfcli.ui.keys import KeyReader
from rfcli.ui.steering import Request, Steering
from rfcli.ui.tables import experiment_view

REDRAW_SECONDS = 0.5
CAUSE = "key"


class LiveView:
    def __init__(self, store: ExperimentStore, folder: Path, console: Console) -> None:
        self.store = store
        self.folder = folder
        self.console = console
        self.steering = Steering()
        self.keys = KeyReader()
        self.leave_requested = False
        self.progress: LiveProgress | None = None
        """Each training run's place inside its chunk (the controller's), once training starts."""
        self._live: Live | None = None
        self._drawn_at = 0.0

    def __enter__(self) -> LiveView:
        if self.console.is_terminal:
            self._live = Live(self.render(), console=self.console, auto_refresh=False, transient=False)
            self._live.__enter__()
            self.keys.__enter__()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self._live is not None:
            self.keys.__exit__(kind, error, trace)
            self._live.update(self.render(), refresh=True)
            self._live.__exit__(kind, error, trace)
        else:
            self.console.print(self.render())

    def announce(self, line: str) -> None:
        """A line above the table (or the line itself, without a terminal)."""
        self.console.print(line, highlight=False, markup=False)

    def refresh(self) -> None:
        pressed = self.keys.pressed()
        for key in pressed:
            self.handle(self.steering.press(key, [run.id for run in self.store.runs()]))
        if self._live is not None and (pressed or time.monotonic() - self._drawn_at >= REDRAW_SECONDS):
            self._live.update(self.render(), refresh=True)
            self._drawn_at = time.monotonic()

    def handle(self, request: Request | None) -> None:
        """A key's request is given as `rf ctl` gives it, caused by 'key'."""
        if request is None:
            return
        if request.verb == "leave":
            self.leave_requested = True
            self.steering.note = "leaving: chunks in flight finish, then rf run exits (run it again to go on)"
            return
        assert request.run_id is not None
        try:
            submit(
                self.store,
                request.verb,
                request.run_id,
                cause=CAUSE,
                overrides=request.overrides,
                warm=request.warm,
            )
        except (CommandRefused, ConfigError) as refusal:
            self.steering.note = f"{request.verb} run {request.run_id} refused: {refusal}"
            return
        self.steering.note = f"{request.verb} run {request.run_id}: sent"

    def render(self) -> Group:
        runs = self.store.runs()
        selected = runs[min(self.steering.selected, len(runs) - 1)].id if runs else None
        table = experiment_view(
            self.store, self.folder, selected if self.keys.active else None, self.progress
        )
        return Group(table, self.steering.footer()) if self.keys.active else table
