"""The scheduler's policy, and properties of whole simulated schedules (no torch)."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from rfcli.engine.scheduler import Assignment, RunProgress, next_assignments
from rfcli.engine.simulation import ChunkSpan, simulate


def progress(
    run_id: int, done: int = 0, total: int | None = 4, last: int | None = None, schedulable: bool = True
) -> RunProgress:
    return RunProgress(run_id, done, total, last, schedulable)


def pairs(assignments: list[Assignment]) -> list[tuple[int, int]]:
    return [(a.worker, a.run_id) for a in assignments]


# The policy


def test_one_worker_is_exact_round_robin() -> None:
    done = dict.fromkeys(range(1, 5), 0)
    last: dict[int, int | None] = dict.fromkeys(done, None)
    order = []
    for _ in range(4 * 3):
        runs = [progress(r, done[r], total=3 if done[r] else None, last=last[r]) for r in done]
        (assignment,) = next_assignments(runs, free_workers=[0], busy_runs=())
        order.append(assignment.run_id)
        done[assignment.run_id] += 1
        last[assignment.run_id] = 0
    assert order == [1, 2, 3, 4] * 3
    runs = [progress(r, 3, total=3, last=0) for r in done]
    assert next_assignments(runs, [0], ()) == []


def test_furthest_behind_goes_first() -> None:
    runs = [progress(1, done=3), progress(2, done=1), progress(3, done=2), progress(4, done=1)]
    assert pairs(next_assignments(runs, [0, 1, 2], ())) == [(0, 2), (1, 4), (2, 3)]


def test_ties_go_to_the_run_whose_state_is_on_the_worker() -> None:
    runs = [progress(1, done=2, last=1), progress(2, done=2, last=0), progress(3, done=2)]
    assert pairs(next_assignments(runs, [0], ())) == [(0, 2)]


def test_affinity_never_beats_progress() -> None:
    runs = [progress(1, done=2, last=0), progress(2, done=1, last=3)]
    assert pairs(next_assignments(runs, [0], ())) == [(0, 2)]


def test_tied_run_is_left_to_the_free_worker_that_holds_its_state() -> None:
    runs = [progress(1, done=1, last=1), progress(2, done=1, last=None)]
    assert pairs(next_assignments(runs, [0, 1], ())) == [(0, 2), (1, 1)]


def test_without_affinity_ties_go_to_the_lowest_run_id() -> None:
    runs = [progress(7, done=1, last=5), progress(3, done=1, last=6), progress(5, done=1)]
    assert pairs(next_assignments(runs, [0, 1, 2], ())) == [(0, 3), (1, 5), (2, 7)]


def test_busy_runs_are_skipped() -> None:
    runs = [progress(1, done=0), progress(2, done=1), progress(3, done=2)]
    assert pairs(next_assignments(runs, [0, 1], busy_runs={1})) == [(0, 2), (1, 3)]


def test_finished_and_unschedulable_runs_are_skipped() -> None:
    runs = [
        progress(1, done=4, total=4),  # finished
        progress(2, done=5, total=4),  # past its total: finished too
        progress(3, done=0, schedulable=False),  # stopped, failed or deleted
        progress(4, done=3, total=4),
    ]
    assert pairs(next_assignments(runs, [0, 1], ())) == [(0, 4)]


def test_unknown_total_counts_as_not_started() -> None:
    runs = [progress(1, done=1, total=4), progress(2, done=2, total=None)]
    assert pairs(next_assignments(runs, [0, 1], ())) == [(0, 2), (1, 1)]
    assert next_assignments([progress(1, done=9, total=None)], [0], ()) == [Assignment(0, 1)]


def test_workers_get_runs_in_the_order_given_and_idle_ones_get_nothing() -> None:
    runs = [progress(1), progress(2)]
    assert pairs(next_assignments(runs, [3, 1, 0, 2], ())) == [(3, 1), (1, 2)]
    assert next_assignments(runs, [], ()) == []
    assert next_assignments([], [0, 1], ()) == []


def test_a_run_or_worker_given_twice_is_an_error() -> None:
    with pytest.raises(ValueError, match="run id 1 appears twice"):
        next_assignments([progress(1), progress(1)], [0], ())
    with pytest.raises(ValueError, match="free worker 0 appears twice"):
        next_assignments([progress(1), progress(2)], [0, 0], ())


# Whole schedules

CASES = [(runs, workers) for runs in (2, 4, 8, 16) for workers in (1, 2, 4)]
SEEDS = range(5)
TOTAL_CHUNKS = 5


def varied_chunk_seconds(num_runs: int, seed: int) -> dict[int, float]:
    rng = random.Random(seed)
    return {run_id: rng.uniform(0.5, 2.0) for run_id in range(1, num_runs + 1)}


def event_times(timeline: list[ChunkSpan]) -> list[float]:
    return sorted({t for span in timeline for t in (span.start, span.end)})


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize(("num_runs", "num_workers"), CASES)
def test_simulated_schedule_properties(num_runs: int, num_workers: int, seed: int) -> None:
    seconds = varied_chunk_seconds(num_runs, seed)
    result = simulate(seconds, TOTAL_CHUNKS, num_workers)
    timeline = result.timeline

    # Each (run, chunk) trained exactly once: every run completes all its chunks.
    trained = Counter((span.run_id, span.chunk_index) for span in timeline)
    assert trained == Counter({(r, c): 1 for r in seconds for c in range(TOTAL_CHUNKS)})

    # A run's chunks in order, one after the other: never on two workers at overlapping times.
    for run_id in seconds:
        spans = sorted((s for s in timeline if s.run_id == run_id), key=lambda s: s.start)
        assert [s.chunk_index for s in spans] == list(range(TOTAL_CHUNKS))
        assert all(later.start >= earlier.end for earlier, later in zip(spans, spans[1:], strict=False))
        assert all(s.end - s.start == pytest.approx(seconds[run_id]) for s in spans)

    # A worker trains one chunk at a time.
    for worker in range(num_workers):
        spans = sorted((s for s in timeline if s.worker == worker), key=lambda s: s.start)
        assert all(later.start >= earlier.end for earlier, later in zip(spans, spans[1:], strict=False))

    for t in event_times(timeline):
        running = [s for s in timeline if s.start <= t < s.end]
        busy_runs = {s.run_id for s in running}
        done = Counter(s.run_id for s in timeline if s.end <= t)
        unfinished = {r for r in seconds if done[r] < TOTAL_CHUNKS}
        # No worker idle while an unfinished run was free.
        if unfinished - busy_runs:
            assert len(running) == num_workers, f"a worker idles at t={t} while runs wait"
        # The runs started at t were the furthest behind of those free just before.
        started = {s.run_id for s in running if s.start == t}
        waiting = unfinished - {s.run_id for s in running if s.start < t}
        passed_over = waiting - started
        if started and passed_over:
            assert max(done[r] for r in started) <= min(done[r] for r in passed_over)

    busy_seconds = sum(s.end - s.start for s in timeline)
    assert result.makespan == max(s.end for s in timeline)
    assert result.utilization == pytest.approx(busy_seconds / (num_workers * result.makespan))
    assert 0 < result.utilization <= 1
    assert result.first_comparison == max(s.end for s in timeline if s.chunk_index == 0)


def test_one_worker_never_waits_and_compares_after_one_round() -> None:
    seconds = {1: 1.0, 2: 2.0, 3: 0.5}
    result = simulate(seconds, total_chunks=2, num_workers=1)
    trained = [(s.run_id, s.chunk_index) for s in result.timeline]
    assert trained == [(1, 0), (2, 0), (3, 0), (1, 1), (2, 1), (3, 1)]
    assert result.first_comparison == pytest.approx(3.5)
    assert result.makespan == pytest.approx(7.0)
    assert result.utilization == pytest.approx(1.0)


def test_more_workers_than_runs_leaves_the_rest_idle() -> None:
    result = simulate({1: 1.0, 2: 1.0}, total_chunks=3, num_workers=4)
    assert result.makespan == pytest.approx(3.0)
    assert result.utilization == pytest.approx(0.5)
    assert {s.worker for s in result.timeline} == {0, 1}  # affinity: each run stays on its worker


@pytest.mark.parametrize(
    ("seconds", "total_chunks", "num_workers", "message"),
    [
        ({}, 2, 1, "chunk_seconds is empty"),
        ({1: 1.0}, 0, 1, "total_chunks >= 1"),
        ({1: 1.0}, 2, 0, "num_workers >= 1"),
        ({1: 1.0, 2: 0.0}, 2, 1, "must be positive"),
    ],
)
def test_simulate_rejects_bad_input(
    seconds: dict[int, float], total_chunks: int, num_workers: int, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        simulate(seconds, total_chunks, num_workers)
