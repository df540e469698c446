"""How busy the scheduler keeps the workers, and how soon every run can be compared.

Simulates K runs on W workers (no training, no sleeping): each run's chunk takes its own time,
drawn once per K from a seeded uniform 0.5-2.0 s, so the same runs are compared across W.
Every run trains NUM_CHUNKS chunks.

    python benchmarks/scheduler_utilization.py

Columns:
- utilization: busy worker-seconds / (W x makespan).
- best possible: the same for the shortest makespan any schedule could reach: the larger of
  (all work / W) and the slowest run's own time (a run's chunks are trained one after another).
- first comparison: seconds until every run has finished its first chunk.
- one run at a time: the same, when each worker trains a run to its end before taking the next
  (training without chunks): the last run only starts when the others are done.

A second table puts a stopping policy in the loop (16 runs, eta 2, rungs 1, 2, 4): each run's
metric at chunk c is its quality (uniform 0-1) + 1/c + noise (sd 0.05), seeded. Columns: chunks
trained (of 16 x 8), idle worker-seconds in all (the tail, when fewer runs are left than workers)
and while some run could have trained (the policy waiting for a cohort must never cause that).

A third table puts a model-based search in the loop too: the same 16 runs are its proposals, each
entering the schedule as a slot frees (at most `concurrent` in the schedule at once), and the
last column counts worker-seconds a worker sat free while proposals were left to make.
"""

from __future__ import annotations

import heapq
import random

from rfcli.engine.simulation import simulate
from rfcli.policy.halving import SuccessiveHalving

RUN_COUNTS = (2, 4, 8, 16)
WORKER_COUNTS = (1, 2, 4)
NUM_CHUNKS = 8
MIN_SECONDS, MAX_SECONDS = 0.5, 2.0


def chunk_seconds(num_runs: int) -> dict[int, float]:
    rng = random.Random(num_runs)
    return {run_id: rng.uniform(MIN_SECONDS, MAX_SECONDS) for run_id in range(1, num_runs + 1)}


def first_comparison_one_run_at_a_time(seconds: dict[int, float], num_workers: int) -> float:
    """Runs in id order, each trained to its end on the first worker free; when all have one chunk."""
    free_at = [0.0] * num_workers
    first_chunk_ends = []
    for run_id in sorted(seconds):
        start = heapq.heappop(free_at)
        first_chunk_ends.append(start + seconds[run_id])
        heapq.heappush(free_at, start + NUM_CHUNKS * seconds[run_id])
    return max(first_chunk_ends)


def main() -> None:
    print(f"{NUM_CHUNKS} chunks per run, chunk times {MIN_SECONDS}-{MAX_SECONDS} s per run (seeded)\n")
    print(
        "| runs | workers | busy / total worker-s | utilization | best possible | makespan (s) "
        "| first comparison (s) | one run at a time (s) |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for num_runs in RUN_COUNTS:
        seconds = chunk_seconds(num_runs)
        work = NUM_CHUNKS * sum(seconds.values())
        for num_workers in WORKER_COUNTS:
            result = simulate(seconds, NUM_CHUNKS, num_workers)
            shortest = max(work / num_workers, NUM_CHUNKS * max(seconds.values()))
            baseline = first_comparison_one_run_at_a_time(seconds, num_workers)
            print(
                f"| {num_runs} | {num_workers} | {work:.1f} / {num_workers * result.makespan:.1f} "
                f"| {result.utilization:.1%} | {work / (num_workers * shortest):.1%} "
                f"| {result.makespan:.1f} | {result.first_comparison:.1f} | {baseline:.1f} |"
            )

    policy_table()
    search_table()


def metric_values(seconds: dict[int, float]) -> dict[int, list[float]]:
    """Each run's metric at chunk c: its quality (uniform 0-1) + 1/c + noise, seeded."""
    rng = random.Random(len(seconds))
    quality = {run_id: rng.uniform(0.0, 1.0) for run_id in seconds}
    return {r: [quality[r] + 1 / c + rng.gauss(0, 0.05) for c in range(1, NUM_CHUNKS + 1)] for r in seconds}


def policy_table(num_runs: int = 16) -> None:
    seconds = chunk_seconds(num_runs)
    values = metric_values(seconds)
    policies = {
        "none": None,
        "sha": SuccessiveHalving("m", synchronous=True),
        "asha": SuccessiveHalving("m"),
    }
    print(f"\n{num_runs} runs with a policy in the loop (eta 2, rungs 1, 2, 4)\n")
    print(
        "| policy | workers | chunks trained | utilization | idle worker-s | idle while a run could train |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for name, policy in policies.items():
        for num_workers in WORKER_COUNTS:
            result = simulate(seconds, NUM_CHUNKS, num_workers, policy, values)
            busy = sum(span.end - span.start for span in result.timeline)
            print(
                f"| {name} | {num_workers} | {len(result.timeline)} / {num_runs * NUM_CHUNKS} "
                f"| {result.utilization:.1%} | {num_workers * result.makespan - busy:.1f} "
                f"| {result.idle_while_runnable:.1f} |"
            )


def search_table(num_runs: int = 16) -> None:
    seconds = chunk_seconds(num_runs)
    values = metric_values(seconds)
    print(f"\n{num_runs} proposals of a search, refilled as slots free (asha: eta 2, rungs 1, 2, 4)\n")
    print(
        "| policy | concurrent | workers | chunks trained | utilization | idle while a run could train "
        "| idle while proposals were left |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, policy in {"none": None, "asha": SuccessiveHalving("m")}.items():
        for concurrent in (4, 8):
            for num_workers in WORKER_COUNTS:
                result = simulate(seconds, NUM_CHUNKS, num_workers, policy, values, concurrent)
                trained = f"{len(result.timeline)} / {num_runs * NUM_CHUNKS}"
                print(
                    f"| {name} | {concurrent} | {num_workers} | {trained} "
                    f"| {result.utilization:.1%} | {result.idle_while_runnable:.1f} "
                    f"| {result.idle_while_budget_left:.1f} |"
                )


if __name__ == "__main__":
    main()
