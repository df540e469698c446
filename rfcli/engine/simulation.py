"""Simulate the scheduler: K runs on W workers, where each run's chunks take their own time.

Event driven (no sleeping): time jumps from one chunk's end to the next, and at every event
the free workers ask `next_assignments` for work, as the controller does. With a stopping policy
(sha, asha) in the loop, each run's metric at each chunk is given, and after every chunk end the
policy's decisions stop runs, as the controller's do. With a model-based search in the loop, the
runs enter the schedule in id order, each as a slot frees (`search/proposer.free_slots`), as the
controller's proposals do. Used by the tests (to check the schedule's properties over many cases)
and by benchmarks/scheduler_utilization.py.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from rfcli.engine.scheduler import RunProgress, next_assignments
from rfcli.policy.decisions import Policy, RunHistory
from rfcli.search.proposer import free_slots


class ChunkSpan(NamedTuple):
    """One chunk trained: `chunk_index` counts from 0, times are in seconds from the start."""

    worker: int
    run_id: int
    chunk_index: int
    start: float
    end: float


@dataclass(frozen=True)
class SimulationResult:
    timeline: list[ChunkSpan]
    """Every chunk trained, in the order they started."""
    makespan: float
    """Seconds until the last chunk ended."""
    utilization: float
    """Busy worker-seconds / (workers x makespan): 1.0 means no worker ever waited."""
    first_comparison: float
    """Seconds until every run finished its first chunk, so all runs can be compared."""
    stopped: list[int] = field(default_factory=list)
    """Runs a policy stopped, in the order it stopped them."""
    idle_while_runnable: float = 0.0
    """Worker-seconds a worker sat free while some run could have trained: the scheduler and the
    policy together must keep this at 0 (a policy waiting for a cohort never holds a run back)."""
    idle_while_budget_left: float = 0.0
    """With a search: worker-seconds a worker sat free while proposals were left to make."""


def simulate(
    chunk_seconds: Mapping[int, float],
    total_chunks: int,
    num_workers: int,
    policy: Policy | None = None,
    values: Mapping[int, Sequence[float]] | None = None,
    concurrent: int | None = None,
) -> SimulationResult:
    """Train `total_chunks` chunks of every run in `chunk_seconds` (run id -> seconds per chunk);
    with a `policy`, `values` gives each run's metric at the end of each of its chunks. With
    `concurrent`, a search proposes the runs: each enters the schedule when a slot frees."""
    if not chunk_seconds:
        raise ValueError("chunk_seconds is empty; give at least one run id -> seconds per chunk")
    if total_chunks < 1 or num_workers < 1:
        raise ValueError(f"need total_chunks >= 1 and num_workers >= 1, got {total_chunks} and {num_workers}")
    bad = {run_id: s for run_id, s in chunk_seconds.items() if not s > 0}
    if bad:
        raise ValueError(f"chunk times must be positive seconds, got {bad}")
    if concurrent is not None and concurrent < 1:
        raise ValueError(f"need concurrent >= 1, got {concurrent}")
    to_propose = sorted(chunk_seconds) if concurrent is not None else []
    in_schedule = [] if concurrent is not None else list(chunk_seconds)

    done = dict.fromkeys(chunk_seconds, 0)
    last_worker: dict[int, int | None] = dict.fromkeys(chunk_seconds, None)
    running: dict[int, ChunkSpan] = {}  # worker -> the chunk it is training
    ends: list[tuple[float, int]] = []  # heap of (end time, worker)
    timeline: list[ChunkSpan] = []
    first_chunk_ends: list[float] = []
    stopped: list[int] = []
    judged: dict[int, set[int]] = {run_id: set() for run_id in chunk_seconds}
    idle_while_runnable = idle_while_budget_left = 0.0
    now = 0.0

    while True:
        if concurrent is not None:  # a stopped run's chunk in flight holds its slot until it ends, as in rf
            training = {span.run_id for span in running.values()}
            active = sum(
                1 for r in in_schedule if (r not in stopped and done[r] < total_chunks) or r in training
            )
            for _ in range(free_slots(active, len(in_schedule), concurrent, len(chunk_seconds))):
                in_schedule.append(to_propose[len(in_schedule)])
        progress = [
            # As in the real engine, a run's total is only known once its data is chunked.
            RunProgress(
                run_id=run_id,
                chunks_done=done[run_id],
                total_chunks=total_chunks if done[run_id] else None,
                last_worker=last_worker[run_id],
                schedulable=run_id not in stopped,
            )
            for run_id in in_schedule
        ]
        free = [worker for worker in range(num_workers) if worker not in running]
        busy = {span.run_id for span in running.values()}
        for assignment in next_assignments(progress, free, busy):
            run_id = assignment.run_id
            span = ChunkSpan(assignment.worker, run_id, done[run_id], now, now + chunk_seconds[run_id])
            running[assignment.worker] = span
            timeline.append(span)
            heapq.heappush(ends, (span.end, span.worker))
        if not ends:
            break
        # Jump to the next chunk end; chunks that end at the same moment are all taken together.
        free = [worker for worker in range(num_workers) if worker not in running]
        busy = {span.run_id for span in running.values()}
        waiting = [p for p in progress if p.schedulable and not p.finished and p.run_id not in busy]
        idle_while_runnable += min(len(free), len(waiting)) * (ends[0][0] - now)
        if len(in_schedule) < len(chunk_seconds):
            idle_while_budget_left += len(free) * (ends[0][0] - now)
        now = ends[0][0]
        while ends and ends[0][0] == now:
            _, worker = heapq.heappop(ends)
            span = running.pop(worker)
            done[span.run_id] += 1
            last_worker[span.run_id] = worker
            if span.chunk_index == 0:
                first_chunk_ends.append(span.end)
        if policy is not None:
            assert values is not None, "a policy in the loop needs each run's values"
            busy = {span.run_id for span in running.values()}
            entered = {run_id: done[run_id] for run_id in in_schedule}
            for decision in policy.decide(_histories(entered, total_chunks, values, stopped, busy, judged)):
                judged[decision.run_id].add(decision.rung)
                if decision.verb == "stop":
                    stopped.append(decision.run_id)
                elif decision.verb != "continue":
                    raise ValueError(f"the simulation only stops runs; a policy decided '{decision.verb}'")

    unfinished = {run_id: n for run_id, n in done.items() if n < total_chunks and run_id not in stopped}
    if unfinished:  # the scheduler left runs behind with workers free: a bug, never a result
        raise RuntimeError(f"simulation stopped with runs unfinished (run id -> chunks done): {unfinished}")
    busy_seconds = sum(span.end - span.start for span in timeline)
    return SimulationResult(
        timeline=timeline,
        makespan=now,
        utilization=busy_seconds / (num_workers * now),
        first_comparison=max(first_chunk_ends),
        stopped=stopped,
        idle_while_runnable=idle_while_runnable,
        idle_while_budget_left=idle_while_budget_left,
    )


def _histories(
    done: Mapping[int, int],
    total_chunks: int,
    values: Mapping[int, Sequence[float]],
    stopped: list[int],
    busy: set[int],
    judged: Mapping[int, set[int]],
) -> list[RunHistory]:
    def state(run_id: int) -> str:
        if run_id in stopped:
            return "stopped"
        if done[run_id] >= total_chunks:
            return "completed"
        return "running" if run_id in busy else "ready" if done[run_id] else "pending"

    return [
        RunHistory(
            run_id=run_id,
            state=state(run_id),
            chunks_done=chunks,
            total_chunks=total_chunks if chunks else None,
            values={chunk: values[run_id][chunk - 1] for chunk in range(1, chunks + 1)},
            judged=frozenset(judged[run_id]),
        )
        for run_id, chunks in done.items()
    ]
