"""Which run trains its next chunk on which free worker.

The policy, applied each time workers become free:

1. Progress first. A free worker gets the run that has fallen furthest behind: the fewest
   chunks done. Every run then advances together, so after the first round every
   configuration has a loss on the same amount of data and can be compared (and the bad ones
   stopped) long before any of them has finished. With one worker this is exact round robin:
   every run trains chunk 1, then every run chunk 2, and so on.
2. Affinity breaks ties. Among runs equally far behind, a worker prefers the run it trained
   last: that run's state (adapter weights, optimizer) is already in its memory, so nothing has
   to be saved and loaded. A tied run that another free worker trained last is left to that
   worker, for the same reason.
3. Then the lowest run id, so the schedule is deterministic and easy to read in a log.

A run is never given to two workers, never while it is busy, and never once it has trained all
its chunks or has left the schedule (stopped, failed, completed, deleted). A worker with
nothing to do gets nothing. No worker waits while some run could train: the policy only orders
the runs, it never holds one back.

Pure logic: no torch, no I/O, so it is tested and simulated in milliseconds.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class RunProgress:
    """What the scheduler needs to know about one run."""

    run_id: int
    chunks_done: int
    total_chunks: int | None
    """None until the run's data is cut into chunks (before its first chunk)."""
    last_worker: int | None
    """The worker that trained the run's last chunk, so holds its state; None before chunk 1."""
    schedulable: bool
    """False for runs that left the schedule: stopped, failed, completed or deleted."""

    @property
    def finished(self) -> bool:
        """True once the run has trained every chunk."""
        return self.total_chunks is not None and self.chunks_done >= self.total_chunks

    @property
    def progress(self) -> int:
        """Chunks done, for ordering; a run whose total is not known yet has not started."""
        return 0 if self.total_chunks is None else self.chunks_done


@dataclass(frozen=True)
class Assignment:
    """Train the next chunk of `run_id` on `worker`."""

    worker: int
    run_id: int


def next_assignments(
    runs: Sequence[RunProgress], free_workers: Sequence[int], busy_runs: Collection[int]
) -> list[Assignment]:
    """Give each free worker, in order, the run that has fallen furthest behind (see module doc).

    `busy_runs` are the ids of runs training a chunk right now. Returns at most one assignment
    per free worker and per run; workers left without a run are not in the result.
    """
    _check_unique("run id", [run.run_id for run in runs])
    _check_unique("free worker", list(free_workers))
    candidates = [run for run in runs if run.schedulable and not run.finished and run.run_id not in busy_runs]
    free = set(free_workers)
    assignments = []
    for worker in free_workers:
        if not candidates:
            break

        def rank(run: RunProgress, worker: int = worker) -> tuple[int, int, int]:
            if run.last_worker == worker:
                affinity = 0  # its state is already on this worker
            elif run.last_worker in free:
                affinity = 2  # another free worker holds its state: leave it to that one
            else:
                affinity = 1
            return (run.progress, affinity, run.run_id)

        chosen = min(candidates, key=rank)
        candidates.remove(chosen)
        free.discard(worker)
        assignments.append(Assignment(worker=worker, run_id=chosen.run_id))
    return assignments


def _check_unique(what: str, values: list[int]) -> None:
    seen: set[int] = set()
    for value in values:
        if value in seen:
            raise ValueError(f"{what} {value} appears twice; each must be given once")
        seen.add(value)
