"""What the live table knows between chunk boundaries: each training run's place inside its chunk,
and the experiment's estimated time to finish. Kept in memory: the store records finished chunks only.

The estimate is wall-clock: the steps still to train times the seconds each step has taken so far
in this `rf run`, all workers together, evaluations and checkpoint writes included. A run whose
length is not known yet (it has not started) counts as long as the median of the runs that are.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from rfcli.engine.messages import ChunkProgress
from rfcli.store.database import RunRecord
from rfcli.store.states import UNFINISHED


@dataclass
class LiveProgress:
    clock: Callable[[], float] = time.monotonic
    in_chunk: dict[int, ChunkProgress] = field(default_factory=dict)
    """The latest progress of each run training now."""
    started_at: float | None = None
    """When the first run began training in this `rf run`: the estimate's clock starts there."""
    first_steps: dict[int, int] = field(default_factory=dict)
    """Each run's step when this `rf run` first saw it."""

    def note(self, progress: ChunkProgress) -> None:
        if self.started_at is None:
            self.started_at = self.clock()
        self.in_chunk[progress.run_id] = progress

    def chunk_ended(self, run_id: int) -> None:
        self.in_chunk.pop(run_id, None)

    def step(self, run: RunRecord) -> int:
        """The run's step now: inside its chunk while it trains, else its last recorded one."""
        live = self.in_chunk.get(run.id)
        return max(live.step, run.global_step) if live is not None else run.global_step

    def max_steps(self, run: RunRecord) -> int | None:
        live = self.in_chunk.get(run.id)
        return run.max_steps if run.max_steps is not None else live.max_steps if live is not None else None

    def eta_seconds(self, runs: list[RunRecord]) -> float | None:
        """Seconds until every run left to train has finished, or None before there is a pace to go by."""
        for run in runs:
            self.first_steps.setdefault(run.id, run.global_step)
        if self.started_at is None:
            return None
        elapsed = self.clock() - self.started_at
        trained = sum(self.step(run) - self.first_steps[run.id] for run in runs if run.state != "deleted")
        known = [steps for run in runs if (steps := self.max_steps(run)) is not None]
        if elapsed <= 0 or trained <= 0 or not known:
            return None
        typical = statistics.median(known)
        remaining = sum(
            max(0.0, (self.max_steps(run) or typical) - self.step(run))
            for run in runs
            if run.state in UNFINISHED
        )
        return remaining * elapsed / trained


def format_duration(seconds: float) -> str:
    """'45s', '12m05s', '3h07m'."""
    whole = int(round(seconds))
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
