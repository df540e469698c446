"""Population based training: every `interval` chunks the weakest runs are replaced by warm clones
of the strongest, with perturbed settings.

The rules, applied after every recorded chunk to what the store holds:

1. Exploit points are every `interval` chunks (interval, 2 x interval, ...) before a run's last
   chunk.
2. A point is decided once no run in the schedule can still reach it (the cohort is complete),
   all its runs together; the scheduler keeps every worker busy meanwhile. A run reaching it
   after that (a resumed run, a late cold clone) is decided alone against the same values.
3. The cohort is every value recorded at that chunk, ranked best first; equal values share a
   rank and NaN ranks last. With n values, m = floor(n x quantile) runs are exploited: the bottom
   are the runs ranked below n - m (a tie at the cutoff spares every run in it), the top are the
   runs ranked m or better. m = 0 (too few runs) exploits nothing.
4. Each bottom run still in the schedule is replaced: it stops, and a warm clone of a top run
   (weights, step, data position and RNG; a fresh optimizer) takes its place. Parents are taken
   best first, in turn when there are more bottom runs than parents; a parent must still be in
   the schedule (a finished run has nothing left to train).
5. The clone's settings: each perturbed key (default `training.learning_rate`) is, with
   probability `resample_probability`, drawn afresh from the values the plan gave it (its grid,
   or its random-search draws), else the parent's value times a factor drawn from `factors`
   (default 0.8 or 1.2), kept to 4 significant digits. An integer setting (LoRA's `r`) stays an
   integer: the product rounded, and moved one step the factor's way when rounding undid it (never
   below 1 from a value of 1 or more). The draws are seeded by the experiment's seed, the replaced
   run and the point, so the same decision always makes the same clone.
6. Every other run judged at the point goes on; a run with no value there goes on unjudged.
   Each run is decided once per point (the decision is recorded), and a clone is judged only at
   the points it reaches by its own training.
7. Only runs in the schedule (pending, ready, running) are judged. Decisions come out ordered by
   point, then run id.

Pure logic: no torch, no I/O.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from rfcli.policy.decisions import Decision, RunHistory, format_value, ordinal, ranks, recorded_at

LEARNING_RATE = "training.learning_rate"


@dataclass(frozen=True)
class PopulationBasedTraining:
    metric: str
    mode: str = "min"
    interval: int = 2
    quantile: float = 0.25
    perturb: tuple[str, ...] = (LEARNING_RATE,)
    factors: tuple[float, ...] = (0.8, 1.2)
    resample_probability: float = 0.25
    choices: Mapping[str, Sequence[int | float]] = field(default_factory=dict)
    """Per perturbed key, the values the plan gave it: what a fresh draw picks from (rule 5)."""
    seed: int = 0

    def points_for(self, total_chunks: int | None) -> list[int]:
        """Rule 1; before a run's first chunk only the first point is certain."""
        last = self.interval + 1 if total_chunks is None else total_chunks
        return list(range(self.interval, last, self.interval))

    def decide(self, runs: Sequence[RunHistory]) -> list[Decision]:
        decisions = []
        for point in sorted({point for run in runs for point in self.points_for(run.total_chunks)}):
            opened = any(point in run.judged for run in runs)
            if not opened and any(run.can_still_reach(point) for run in runs):
                continue  # rule 2: the cohort is not complete yet
            decisions.extend(self.decide_point(runs, point))
        return decisions

    def decide_point(self, runs: Sequence[RunHistory], point: int) -> list[Decision]:
        recorded = recorded_at(runs, point)
        order = ranks(recorded, self.mode)
        n = len(recorded)
        m = math.floor(n * self.quantile)
        by_id = {run.run_id: run for run in runs}
        parents = sorted(
            (run_id for run_id, rank in order.items() if rank <= m and not math.isnan(recorded[run_id])),
            key=lambda run_id: (order[run_id], run_id),
        )
        parents = [run_id for run_id in parents if by_id[run_id].in_schedule]
        cutoff = self.best([value for run_id, value in recorded.items() if order[run_id] > n - m])
        due = [
            run
            for run in sorted(runs, key=lambda run: run.run_id)
            if run.in_schedule
            and point in run.values
            and point not in run.judged
            and point in self.points_for(run.total_chunks)
        ]
        decisions: list[Decision] = []
        bottom = f"the bottom {m} (cutoff {format_value(cutoff)})"
        for run in due:
            value = run.values[point]
            rank = None if value is None else order[run.run_id]
            at = f"at chunk {point}, {self.metric}"
            where = at if rank is None else f"{at} {format_value(value)} ranks {ordinal(rank)} of {n}"
            candidates = [p for p in parents if p != run.run_id]
            verb, parent_id, changes = "continue", None, {}
            if rank is None:
                reason = f"{at} was not recorded: goes on unjudged"
            elif m == 0:
                reason = f"{where}; too few runs for a {self.quantile:.0%} quantile: goes on"
            elif rank <= n - m:
                reason = f"{where}, not in {bottom}: goes on"
            elif not candidates:
                reason = f"{where}, in {bottom}, but no stronger run is left to clone: goes on"
            else:
                replaced = sum(decision.verb == "replace" for decision in decisions)
                parent = by_id[candidates[replaced % len(candidates)]]
                verb, parent_id = "replace", parent.run_id
                changes = self.perturbed(parent, run.run_id, point)
                changed = ", ".join(
                    f"{key.rsplit('.', 1)[-1]} {format_value(parent.settings[key])} -> {format_value(new)}"
                    for key, new in changes.items()
                )
                standing = f"{ordinal(order[parent.run_id])}, {format_value(recorded[parent.run_id])}"
                reason = (
                    f"{where}, in {bottom}: replaced by a warm clone of run {parent.run_id} "
                    f"({standing}) with {changed}"
                )
            decisions.append(
                Decision(
                    run.run_id, point, verb, self.metric, value, n, rank, cutoff, reason, parent_id, changes
                )
            )
        return decisions

    def best(self, values: list[float]) -> float | None:
        """The best of `values` (the cutoff: the best value that is replaced); NaN if all are NaN."""
        numbers = [value for value in values if not math.isnan(value)]
        if not numbers:
            return math.nan if values else None
        return min(numbers) if self.mode == "min" else max(numbers)

    def perturbed(self, parent: RunHistory, run_id: int, point: int) -> dict[str, int | float]:
        """Rule 5: the clone's new values of the perturbed settings."""
        rng = random.Random(f"{self.seed}:{run_id}:{point}")
        changes: dict[str, int | float] = {}
        for key in self.perturb:
            old = parent.settings[key]
            others = sorted(value for value in set(self.choices.get(key, ())) if value != old)
            if others and rng.random() < self.resample_probability:
                changes[key] = rng.choice(others)
            else:
                changes[key] = scaled(old, rng.choice(self.factors))
        return changes


def scaled(value: int | float, factor: float) -> int | float:
    """Rule 5's product: 4 significant digits, or for an integer the nearest integer that differs."""
    if not isinstance(value, int):
        return float(f"{value * factor:.4g}")
    step = 1 if factor > 1 else -1 if factor < 1 else 0
    new = round(value * factor)
    if new == value:
        new += step
    return max(new, 1) if value >= 1 else new
