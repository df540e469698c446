"""Progress inside a chunk: a Trainer callback that says where the run is between its boundaries.

A chunk can take minutes on a large model; without this the live table would show a run frozen at
its last boundary until the chunk ends. Reports go out at most once per `every` seconds (and at
each chunk's start), from inside the run's training loop, through the `report` function the worker
gives.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable
from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

REPORT_SECONDS = 1.0


class StepProgress(TrainerCallback):
    """Calls `report(step=, chunk_start_step=, chunk_end_step=, chunk_index=, total_chunks=,
    max_steps=, steps_per_second=)` as the run trains; `chunk_ends` gives the run's chunk boundaries
    (known once its training has begun)."""

    def __init__(
        self,
        chunk_ends: Callable[[], list[int]],
        report: Callable[..., None],
        every: float = REPORT_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.chunk_ends = chunk_ends
        self.report = report
        self.every = every
        self.clock = clock
        self._chunk_start: tuple[float, int] | None = None
        """(time, step) at which the chunk in flight began."""
        self._sent_at = 0.0

    def on_step_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        """The first step of a run's turn: its first ever, or the first after it parked at a boundary."""
        if self._chunk_start is None or state.global_step in self.chunk_ends():
            self._chunk_start = (self.clock(), state.global_step)
            self._send(state.global_step, state.max_steps)

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if self.clock() - self._sent_at >= self.every:
            self._send(state.global_step, state.max_steps)

    def _send(self, step: int, max_steps: int) -> None:
        ends = self.chunk_ends()
        if not ends or self._chunk_start is None:
            return
        now = self.clock()
        started_at, start_step = self._chunk_start
        index = min(bisect.bisect_left(ends, max(step, start_step + 1)), len(ends) - 1)
        self.report(
            step=step,
            chunk_start_step=ends[index - 1] if index > 0 else 0,
            chunk_end_step=ends[index],
            chunk_index=index + 1,
            total_chunks=len(ends),
            max_steps=max_steps,
            steps_per_second=(step - start_step) / (now - started_at) if now > started_at else 0.0,
        )
        self._sent_at = now
