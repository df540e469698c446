"""What a policy sees of each run, what it decides, and the numbers that explain the decision.

Shared by every policy (halving.py, pbt.py). Pure: no torch, no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from rfcli.store.states import UNFINISHED

MODES = ("min", "max")
VERBS = ("continue", "stop", "replace")
"""continue: the run trains on; stop: it leaves the schedule; replace (PBT): it is stopped and a
warm clone of a stronger run with perturbed settings takes its place."""


@dataclass(frozen=True)
class RunHistory:
    """One run as a policy sees it, read from the store."""

    run_id: int
    state: str
    chunks_done: int
    total_chunks: int | None
    """None until the run's data is cut into chunks (before its first chunk)."""
    values: Mapping[int, float | None] = field(default_factory=dict)
    """The metric at the end of each chunk the run trained itself (chunk number -> value): NaN
    when it was not a number, None when the run recorded no such metric at that chunk. A warm
    clone has no entries for the chunks its parent trained."""
    judged: frozenset[int] = frozenset()
    """Rungs at which a decision about this run is already recorded: none is ever taken twice."""
    settings: Mapping[str, int | float] = field(default_factory=dict)
    """PBT only: the run's values of the settings it perturbs (dotted key -> value; an integer
    setting as an int)."""

    @property
    def in_schedule(self) -> bool:
        """Still training or waiting to: only such runs are judged."""
        return self.state in UNFINISHED

    def can_still_reach(self, rung: int) -> bool:
        """In the schedule, below the rung, and the rung is before its last chunk."""
        before_end = self.total_chunks is None or rung < self.total_chunks
        return self.in_schedule and self.chunks_done < rung and before_end


@dataclass(frozen=True)
class Decision:
    """One run judged at one rung (a chunk count): what was decided and why."""

    run_id: int
    rung: int
    verb: str
    metric: str
    value: float | None
    """The run's metric at the rung; NaN when not a number, None when not recorded."""
    cohort: int
    """How many values recorded at this rung it was compared with (its own included)."""
    rank: int | None
    """1 is the best; runs with equal values share a rank; None when nothing was compared."""
    cutoff: float | None
    """The worst value that still goes on (PBT: the best value that is replaced)."""
    reason: str
    """The explanation a person reads in `rf status`, the event log and MLflow."""
    parent_id: int | None = None
    """replace: the run whose warm clone takes this run's place."""
    changes: Mapping[str, int | float] = field(default_factory=dict)
    """replace: the clone's perturbed settings (dotted key -> new value)."""

    def __post_init__(self) -> None:
        if self.verb not in VERBS:
            raise ValueError(f"unknown decision '{self.verb}'; expected one of {', '.join(VERBS)}")

    @property
    def acts(self) -> bool:
        """False for 'continue': nothing changes for the run."""
        return self.verb != "continue"


def recorded_at(runs: Sequence[RunHistory], rung: int) -> dict[int, float]:
    """The values the runs recorded at a rung (NaN included, not-recorded left out), by run id."""
    recorded = {}
    for run in runs:
        value = run.values.get(rung)
        if value is not None:
            recorded[run.run_id] = value
    return recorded


def ranks(values: Mapping[int, float], mode: str) -> dict[int, int]:
    """Each run's rank (1 = best) by its value: equal values share a rank (one more than the
    number of strictly better values), and NaN ranks after every number."""
    if mode not in MODES:
        raise ValueError(f"mode must be min or max, not '{mode}'")
    sign = 1.0 if mode == "min" else -1.0
    numbers = [sign * value for value in values.values() if not math.isnan(value)]
    return {
        run_id: len(numbers) + 1
        if math.isnan(value)
        else 1 + sum(1 for other in numbers if other < sign * value)
        for run_id, value in values.items()
    }


def format_value(value: float | None) -> str:
    return "not recorded" if value is None else "NaN" if math.isnan(value) else f"{value:.4g}"


def ordinal(rank: int) -> str:
    """1 -> '1st', 2 -> '2nd', 11 -> '11th'."""
    suffix = "th" if 10 <= rank % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(rank % 10, "th")
    return f"{rank}{suffix}"


class Policy(Protocol):
    """What the controller asks of any policy: the decisions the recorded values call for now."""

    @property
    def metric(self) -> str:
        """The metric it compares runs by."""
        ...

    def decide(self, runs: Sequence[RunHistory]) -> list[Decision]: ...
