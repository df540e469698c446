"""The wall-time estimate from calibrated steps: one test per rule of `rfcli/estimate/timing.py`."""

from __future__ import annotations

import pytest

from rfcli.config.schema import PolicyConfig
from rfcli.estimate.timing import Calibration, RunCost, run_seconds, stopping_policy, sweep_seconds

CALIBRATED = Calibration(
    steps=3,
    step_seconds=0.5,
    tokens_per_step=1000.0,
    boundary_seconds=2.0,
    first_setup_seconds=6.0,
    later_setup_seconds=1.0,
    startup_seconds=5.0,
)


def runs(count: int, steps: int = 40, chunks: int = 4, tokens: float = 1000.0) -> list[RunCost]:
    return [RunCost(run_id, steps, chunks, tokens) for run_id in range(1, count + 1)]


def test_rule_1_set_up_then_steps_scaled_by_tokens_then_a_boundary_per_chunk() -> None:
    [run] = runs(1)
    assert run_seconds(run, CALIBRATED) == 1.0 + 40 * 0.5 + 4 * 2.0
    assert run_seconds(run, CALIBRATED, first_on_worker=True) == 6.0 + 40 * 0.5 + 4 * 2.0
    [longer_rows] = runs(1, tokens=1500.0)
    assert run_seconds(longer_rows, CALIBRATED) == 1.0 + 40 * 0.5 * 1.5 + 4 * 2.0


def test_rule_2_the_sweep_is_start_up_then_the_runs_on_the_workers() -> None:
    each = 1.0 + 40 * 0.5 + 4 * 2.0
    assert sweep_seconds(runs(4), CALIBRATED, workers=1) == pytest.approx(5.0 + 5.0 + 4 * each)
    assert sweep_seconds(runs(4), CALIBRATED, workers=2) == pytest.approx(5.0 + 5.0 + 2 * each)


def test_rule_2_runs_of_other_lengths_keep_their_whole_time() -> None:
    mixed = [RunCost(1, 40, 4, 1000.0), RunCost(2, 20, 2, 1000.0)]
    total = run_seconds(mixed[0], CALIBRATED) + run_seconds(mixed[1], CALIBRATED)
    assert sweep_seconds(mixed, CALIBRATED, workers=1) == pytest.approx(5.0 + 5.0 + total)


def test_rule_3_asha_is_expected_to_stop_most_runs_early_the_same_way_every_time() -> None:
    sixteen = runs(16, steps=80, chunks=8)
    asha = stopping_policy(PolicyConfig(name="asha", eta=2))
    full = sweep_seconds(sixteen, CALIBRATED, workers=1)
    stopped = sweep_seconds(sixteen, CALIBRATED, workers=1, policy=asha)
    fixed = 5.0 + 5.0
    # eta 2 at rungs 1, 2, 4 of 8 chunks: 16 + 8 + 2 x 4 + 2 x 4 = 40 of 128 chunks, in the simulation
    assert (stopped - fixed) / (full - fixed) == pytest.approx(40 / 128, abs=0.05)
    assert stopped == sweep_seconds(sixteen, CALIBRATED, workers=1, policy=asha)


def test_rule_4_only_halving_policies_are_expected_to_stop_runs() -> None:
    assert stopping_policy(PolicyConfig(name="sha")) is not None
    assert stopping_policy(PolicyConfig(name="pbt")) is None
    assert stopping_policy(PolicyConfig()) is None
