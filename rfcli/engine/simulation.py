"""Simulate the scheduler: K runs on W workers, where each run's chunks take their own time.

Event driven (no sleeping): time jumps from one chunk's end to the next, and at every event
the free workers ask `next_assignments` for work, as the controller does. Used by the tests
(to check the schedule's properties over many cases) and by benchmarks/scheduler_utilization.py.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple

from rfcli.engine.scheduler import RunProgress, next_assignments


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


def simulate(chunk_seconds: Mapping[int, float], total_chunks: int, num_workers: int) -> SimulationResult:
    """Train `total_chunks` chunks of every run in `chunk_seconds` (run id -> seconds per chunk)."""
    if not chunk_seconds:
        raise ValueError("chunk_seconds is empty; give at least one run id -> seconds per chunk")
    if total_chunks < 1 or num_workers < 1:
        raise ValueError(f"need total_chunks >= 1 and num_workers >= 1, got {total_chunks} and {num_workers}")
    bad = {run_id: s for run_id, s in chunk_seconds.items() if not s > 0}
    if bad:
        raise ValueError(f"chunk times must be positive seconds, got {bad}")

    done = dict.fromkeys(chunk_seconds, 0)
    last_worker: dict[int, int | None] = dict.fromkeys(chunk_seconds, None)
    running: dict[int, ChunkSpan] = {}  # worker -> the chunk it is training
    ends: list[tuple[float, int]] = []  # heap of (end time, worker)
    timeline: list[ChunkSpan] = []
    first_chunk_ends: list[float] = []
    now = 0.0

    while True:
        progress = [
            # As in the real engine, a run's total is only known once its data is chunked.
            RunProgress(
                run_id=run_id,
                chunks_done=done[run_id],
                total_chunks=total_chunks if done[run_id] else None,
                last_worker=last_worker[run_id],
                schedulable=True,
            )
            for run_id in chunk_seconds
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
        now = ends[0][0]
        while ends and ends[0][0] == now:
            _, worker = heapq.heappop(ends)
            span = running.pop(worker)
            done[span.run_id] += 1
            last_worker[span.run_id] = worker
            if span.chunk_index == 0:
                first_chunk_ends.append(span.end)

    unfinished = {run_id: n for run_id, n in done.items() if n < total_chunks}
    if unfinished:  # the scheduler left runs behind with workers free: a bug, never a result
        raise RuntimeError(f"simulation stopped with runs unfinished (run id -> chunks done): {unfinished}")
    busy_seconds = sum(span.end - span.start for span in timeline)
    return SimulationResult(
        timeline=timeline,
        makespan=now,
        utilization=busy_seconds / (num_workers * now),
        first_comparison=max(first_chunk_ends),
    )
