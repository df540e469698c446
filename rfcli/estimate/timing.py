"""A sweep's wall time from a few calibrated steps: each run's time, then the sweep's on the plan's
workers, with and without the stops its policy is expected to make.

The rules:

1. A run's time is its set-up (the first run on a worker loads the model and the data, a later one
   builds its trainer only), its optimizer steps at the calibrated seconds per step, scaled by its
   tokens per step against the calibrated run's, and at each chunk boundary the calibrated boundary
   cost (evaluation, generation metrics, the checkpoint's handoff).
2. The sweep's time is the start-up (compiling and checking the plan, as `rf run` does before its
   first chunk), then the runs' chunks as rf's scheduler hands them to the workers
   (`engine.simulation`), each chunk a run's time over its chunks. Runs with different chunk counts
   are simulated at the largest count, each keeping its whole time.
3. With sha or asha, the stops the policy is expected to make: the same simulation with the policy in
   the loop, every run's metric at every chunk drawn from a seeded random quality that improves with
   each chunk, plus noise, and the time averaged over `DRAWS` draws. Which runs stop depends on values
   no one knows yet; how many chunks a halving policy trains depends little on them.
4. PBT replaces runs instead of stopping them: every chunk is trained by a run or by its clone, so its
   time is the time without a policy.

Pure logic: no torch, no I/O.
"""

from __future__ import annotations

import random
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from rfcli.config.schema import PolicyConfig
from rfcli.engine.judging import make_policy
from rfcli.engine.simulation import simulate
from rfcli.policy.decisions import Policy
from rfcli.policy.halving import SuccessiveHalving

DRAWS = 20
NOISE = 0.05


@dataclass(frozen=True)
class Calibration:
    """What a few real steps of the plan's first runs took on this machine."""

    steps: int
    """Steps timed once the first run's set-up was behind it."""
    step_seconds: float
    tokens_per_step: float
    """Of the run whose steps were timed: other runs' steps scale by theirs against it."""
    boundary_seconds: float
    """One chunk boundary: evaluation, generation metrics, the checkpoint's handoff."""
    first_setup_seconds: float
    """The first run on a worker: model, data and trainer."""
    later_setup_seconds: float
    """A later run on the same worker: its trainer (and adapter) only."""
    startup_seconds: float
    """Compiling and checking the plan, which `rf run` does before its first chunk."""


@dataclass(frozen=True)
class RunCost:
    """What one run will train, as its plan and data say."""

    run_id: int
    steps: int
    chunks: int
    tokens_per_step: float


def run_seconds(cost: RunCost, calibration: Calibration, first_on_worker: bool = False) -> float:
    """Rule 1."""
    setup = calibration.first_setup_seconds if first_on_worker else calibration.later_setup_seconds
    scale = cost.tokens_per_step / calibration.tokens_per_step if calibration.tokens_per_step else 1.0
    return setup + cost.steps * calibration.step_seconds * scale + cost.chunks * calibration.boundary_seconds


def sweep_seconds(
    costs: Sequence[RunCost], calibration: Calibration, workers: int, policy: Policy | None = None
) -> float:
    """Rules 2 and 3: the start-up, the first runs' heavier set-up, and the workers' makespan."""
    total_chunks = max(cost.chunks for cost in costs)
    chunk_seconds = {cost.run_id: run_seconds(cost, calibration) / total_chunks for cost in costs}
    first_setups = calibration.first_setup_seconds - calibration.later_setup_seconds
    if policy is None:
        makespan = simulate(chunk_seconds, total_chunks, workers).makespan
    else:
        draws = (drawn_values(costs, total_chunks, seed) for seed in range(DRAWS))
        makespan = statistics.fmean(
            simulate(chunk_seconds, total_chunks, workers, policy, values).makespan for values in draws
        )
    return calibration.startup_seconds + first_setups + makespan


def stopping_policy(config: PolicyConfig) -> Policy | None:
    """Rules 3 and 4: the policy whose stops the estimate expects (sha, asha); PBT stops nothing."""
    policy = make_policy(config, [])
    return policy if isinstance(policy, SuccessiveHalving) else None


def drawn_values(costs: Sequence[RunCost], total_chunks: int, seed: int) -> dict[int, list[float]]:
    """Rule 3's metric: a run's quality in [0, 1), better (lower) with every chunk, plus noise.
    Lower is better under `mode: min`; the halving policy compares ranks, so `max` ranks the same
    draws the other way round, which is as likely."""
    rng = random.Random(seed)
    quality = {cost.run_id: rng.random() for cost in costs}
    return {
        run_id: [value + 1 / chunk + rng.gauss(0.0, NOISE) for chunk in range(1, total_chunks + 1)]
        for run_id, value in quality.items()
    }
