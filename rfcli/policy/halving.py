"""Successive halving: at each rung (a chunk count) keep the best 1/eta of the runs, stop the rest.

The rules, applied after every recorded chunk to what the store holds:

1. Rungs. A rung is a chunk count at which runs are compared: the configured `rungs`, or by
   default the powers of eta (1, eta, eta^2, ...) below the run's total chunks. A rung at or past
   a run's last chunk is never judged there: the run is done anyway.
2. Once per run and rung. A run is judged at a rung when it has trained that chunk itself, and
   the decision is recorded, so it is never taken again: a run a person resumed after a stop
   trains on past the rung it was stopped at (it is judged again at later rungs, like any run).
   A warm clone is not judged at the rungs its parent passed for it.
3. The cohort of a rung is every value recorded there, by any run: runs stopped, failed or
   completed since still count, and so do runs added later by a clone. Values are ranked best
   first (`mode` min or max); equal values share a rank, so a tie never splits by run id.
4. The best k = max(1, n // eta) of the n values go on; the cutoff is the k-th best value. A run
   whose rank is above k is stopped. A tie at the cutoff keeps every run in it. A run that no
   run still in the schedule beats at that rung goes on all the same: the values of runs that
   left count, but can never stop the best of the runs still training, so a sweep always keeps
   a run to finish.
5. Fewer values than eta at a rung compare nothing: the run goes on, and says why.
6. A NaN value ranks after every number, and its run is stopped whatever the cohort.
7. A run with no value at the rung (the metric was not recorded at that chunk: no eval set, a
   misspelled name) goes on unjudged; the decision says so, once.
8. ASHA (asynchronous) judges a run at a rung as late as it can without holding it back: once
   every run that can still reach the rung is training its chunk right now, against the values
   recorded there by then. The scheduler trains the runs furthest behind first, so until that
   moment a worker has a run waiting below the rung to train anyway, and the run at the rung gains
   more values to be compared with. With one worker that is the whole cohort; with more, the runs
   in flight are missing from it, and the decision still comes long before any run completes.
   SHA (synchronous) judges a rung once no run in the schedule can still reach it, all its runs
   together, letting runs at the rung train on meanwhile when a worker has nothing else to do; a
   run reaching it after that (a resumed run, a late clone) is judged as ASHA would. Neither ever
   holds a run back: while a rung waits, the scheduler keeps every worker busy.
9. Only runs in the schedule (pending, ready, running) are judged. Decisions come out ordered by
   rung, then run id, so the same recorded values always give the same decisions.

Pure logic: no torch, no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from rfcli.policy.decisions import Decision, RunHistory, format_value, ordinal, ranks, recorded_at


@dataclass(frozen=True)
class SuccessiveHalving:
    metric: str
    mode: str = "min"
    eta: int = 2
    rungs: tuple[int, ...] | None = None
    """None: the powers of eta below each run's total chunks (rule 1)."""
    synchronous: bool = False
    """True for SHA (rule 8), False for ASHA."""

    def rungs_for(self, total_chunks: int | None) -> list[int]:
        """The rungs a run with this many chunks is judged at (rule 1); None: not known yet."""
        if self.rungs is not None:
            chosen = sorted(set(self.rungs))
        else:
            chosen, rung = [], 1
            while total_chunks is None or rung < total_chunks:
                chosen.append(rung)
                if total_chunks is None:
                    break  # before the run's first chunk, only rung 1 is certain
                rung *= self.eta
        return [rung for rung in chosen if total_chunks is None or rung < total_chunks]

    def decide(self, runs: Sequence[RunHistory]) -> list[Decision]:
        """The decisions not taken yet that the recorded values call for (rule 9's order)."""
        decisions = []
        for rung in sorted({rung for run in runs for rung in self.rungs_for(run.total_chunks)}):
            recorded = recorded_at(runs, rung)
            opened = any(rung in run.judged for run in runs)
            if self.synchronous and not opened and any(run.can_still_reach(rung) for run in runs):
                continue  # rule 8: the cohort is not complete yet
            if any(run.can_still_reach(rung) and run.state != "running" for run in runs):
                continue  # rule 8: a run waiting below the rung trains first; its value may come
            training = list(recorded_at([run for run in runs if run.in_schedule], rung).values())
            for run in sorted(runs, key=lambda run: run.run_id):
                due = run.in_schedule and rung in run.values and rung not in run.judged
                if due and rung in self.rungs_for(run.total_chunks):
                    decisions.append(self.judge(run, rung, recorded, training))
        return decisions

    def judge(
        self, run: RunHistory, rung: int, recorded: Mapping[int, float], training: Sequence[float]
    ) -> Decision:
        """Rules 4 to 7 for one run at one rung, against the values recorded there (`training`:
        those of the runs still in the schedule)."""
        value = run.values.get(rung)
        at = f"at chunk {rung}, {self.metric}"
        if value is None:
            return self._decision(
                run, rung, "continue", None, recorded, None, None, f"{at} was not recorded: goes on unjudged"
            )
        order = ranks(recorded, self.mode)
        rank = order[run.run_id]
        n = len(recorded)
        where = f"{at} {format_value(value)} ranks {ordinal(rank)} of {n}"
        if math.isnan(value):
            return self._decision(
                run, rung, "stop", value, recorded, rank, None, f"{where}: not a number, stop"
            )
        if n < self.eta:
            reason = f"{where}; fewer than eta={self.eta} values to compare: goes on"
            return self._decision(run, rung, "continue", value, recorded, rank, None, reason)
        keep = max(1, n // self.eta)
        numbers = sorted(v for v in recorded.values() if not math.isnan(v))
        if self.mode == "max":
            numbers.reverse()
        cutoff = numbers[min(keep, len(numbers)) - 1]
        kept = f"the best {keep} go on (cutoff {format_value(cutoff)})"
        if rank <= keep:
            return self._decision(
                run, rung, "continue", value, recorded, rank, cutoff, f"{where}; {kept}: goes on"
            )
        if not any(self.better(other, value) for other in training):
            reason = f"{where}; only {kept}, but no run still training beats it: goes on"
            return self._decision(run, rung, "continue", value, recorded, rank, cutoff, reason)
        return self._decision(run, rung, "stop", value, recorded, rank, cutoff, f"{where}; only {kept}: stop")

    def better(self, value: float, than: float) -> bool:
        return value < than if self.mode == "min" else value > than

    def _decision(
        self,
        run: RunHistory,
        rung: int,
        verb: str,
        value: float | None,
        recorded: Mapping[int, float],
        rank: int | None,
        cutoff: float | None,
        reason: str,
    ) -> Decision:
        return Decision(run.run_id, rung, verb, self.metric, value, len(recorded), rank, cutoff, reason)
