"""The policies' rules, one test each (rfcli/policy/halving.py and pbt.py; no torch)."""

from __future__ import annotations

import dataclasses
import math
import random
from collections import Counter
from collections.abc import Mapping

import pytest

from rfcli.engine.simulation import simulate
from rfcli.policy.decisions import Decision, RunHistory, ranks
from rfcli.policy.halving import SuccessiveHalving
from rfcli.policy.pbt import LEARNING_RATE, PopulationBasedTraining

ASHA = SuccessiveHalving("eval_loss", eta=2)
SHA = SuccessiveHalving("eval_loss", eta=2, synchronous=True)


def run(
    run_id: int,
    values: Mapping[int, float | None] | None = None,
    *,
    state: str = "ready",
    total: int | None = 8,
    done: int | None = None,
    judged: tuple[int, ...] = (),
    lr: float = 1e-3,
) -> RunHistory:
    values = values or {}
    return RunHistory(
        run_id=run_id,
        state=state,
        chunks_done=max(values, default=0) if done is None else done,
        total_chunks=total,
        values=values,
        judged=frozenset(judged),
        settings={LEARNING_RATE: lr},
    )


def verbs(decisions: list[Decision]) -> dict[tuple[int, int], str]:
    return {(d.run_id, d.rung): d.verb for d in decisions}


# Ranking


def test_equal_values_share_a_rank_and_nan_ranks_last() -> None:
    assert ranks({1: 2.0, 2: 1.0, 3: 2.0, 4: math.nan, 5: 3.0}, "min") == {1: 2, 2: 1, 3: 2, 4: 5, 5: 4}
    assert ranks({1: 2.0, 2: 1.0, 3: math.nan}, "max") == {1: 1, 2: 2, 3: 3}


# Successive halving, rule by rule


def test_default_rungs_are_powers_of_eta_below_the_last_chunk() -> None:
    assert ASHA.rungs_for(8) == [1, 2, 4]
    assert ASHA.rungs_for(4) == [1, 2]
    assert SuccessiveHalving("m", eta=3).rungs_for(10) == [1, 3, 9]
    assert ASHA.rungs_for(1) == []
    assert ASHA.rungs_for(None) == [1]
    assert SuccessiveHalving("m", rungs=(4, 2, 8)).rungs_for(8) == [2, 4]


def test_a_run_is_judged_only_at_rungs() -> None:
    decisions = ASHA.decide([run(1, {3: 1.0}), run(2, {3: 2.0})])
    assert decisions == []  # 3 is not a rung of an 8-chunk run


def test_asha_keeps_the_best_half_of_the_values_recorded_so_far() -> None:
    runs = [run(1, {1: 3.0}, judged=(1,)), run(2, {1: 1.0}, judged=(1,)), run(3, {1: 2.0}), run(4, {1: 0.5})]
    decisions = {d.run_id: d for d in ASHA.decide(runs)}
    assert [decisions[3].verb, decisions[4].verb] == ["stop", "continue"]
    third = decisions[3]
    assert (third.value, third.cohort, third.rank, third.cutoff) == (2.0, 4, 3, 1.0)
    assert third.reason == ("at chunk 1, eval_loss 2 ranks 3rd of 4; only the best 2 go on (cutoff 1): stop")
    assert decisions[4].reason.endswith("the best 2 go on (cutoff 1): goes on")


def test_asha_judges_a_rung_once_every_run_that_can_still_reach_it_is_training() -> None:
    waiting = [
        run(1, {1: 1.0}, judged=(1,)),
        run(2, {1: 2.0}),
        run(3, done=0),
        run(4, done=0, state="running"),
    ]
    assert ASHA.decide(waiting) == []  # run 3 trains before run 2 anyway, and its value may count
    in_flight = [
        run(1, {1: 1.0}, judged=(1,)),
        run(2, {1: 2.0}),
        run(3, done=0, state="running"),
        run(4, done=0, state="running"),
    ]
    assert verbs(ASHA.decide(in_flight)) == {(2, 1): "stop"}  # before runs 3 and 4 reach the rung


def test_sha_waits_until_no_run_in_the_schedule_can_reach_the_rung() -> None:
    waiting = [run(1, {1: 1.0}), run(2, {1: 2.0}), run(3, done=0)]
    assert SHA.decide(waiting) == []
    failed = [run(1, {1: 1.0}), run(2, {1: 2.0}), run(3, done=0, state="failed")]
    assert verbs(SHA.decide(failed)) == {(1, 1): "continue", (2, 1): "stop"}


def test_sha_judges_a_late_run_at_an_opened_rung_like_asha() -> None:
    runs = [
        run(1, {1: 1.0}, judged=(1,)),
        run(2, {1: 2.0}, state="stopped", judged=(1,)),
        run(3, {1: 3.0}),
        run(4, done=0, state="running"),
    ]
    assert verbs(SHA.decide(runs)) == {(3, 1): "stop"}


def test_a_tie_at_the_cutoff_keeps_every_run_in_it() -> None:
    runs = [run(i, {1: v}) for i, v in [(1, 1.0), (2, 2.0), (3, 2.0), (4, 3.0)]]
    assert verbs(ASHA.decide(runs)) == {
        (1, 1): "continue",
        (2, 1): "continue",
        (3, 1): "continue",
        (4, 1): "stop",
    }


def test_max_mode_keeps_the_highest() -> None:
    runs = [run(1, {1: 0.2}), run(2, {1: 0.9})]
    assert verbs(SuccessiveHalving("reward", mode="max").decide(runs)) == {(1, 1): "stop", (2, 1): "continue"}


def test_fewer_values_than_eta_compare_nothing() -> None:
    policy = SuccessiveHalving("eval_loss", eta=4)
    runs = [run(1, {1: 1.0}), run(2, {1: 5.0}), run(3, {1: 9.0})]
    decisions = policy.decide(runs)
    assert {d.verb for d in decisions} == {"continue"}
    assert "fewer than eta=4 values" in decisions[2].reason


def test_nan_is_stopped_even_alone_and_ranks_after_every_number() -> None:
    (alone,) = ASHA.decide([run(1, {1: math.nan})])
    assert alone.verb == "stop" and "not a number" in alone.reason
    decisions = {
        d.run_id: d for d in ASHA.decide([run(1, {1: math.nan}), run(2, {1: 5.0}), run(3, {1: 6.0})])
    }
    assert decisions[1].rank == 3 and decisions[3].verb == "stop" and decisions[2].verb == "continue"


def test_a_missing_metric_goes_on_unjudged_and_is_not_in_the_cohort() -> None:
    decisions = {d.run_id: d for d in ASHA.decide([run(1, {1: None}), run(2, {1: 2.0}), run(3, {1: 1.0})])}
    assert decisions[1].verb == "continue" and decisions[1].reason.endswith(
        "was not recorded: goes on unjudged"
    )
    assert decisions[2].cohort == 2 and decisions[2].verb == "stop"


def test_a_decision_is_never_taken_twice_so_a_resumed_run_trains_past_its_rung() -> None:
    resumed = run(2, {1: 9.0, 2: 9.0}, judged=(1,))  # stopped at rung 1, then resumed by a person
    others = [run(1, {1: 1.0, 2: 1.0}, judged=(1, 2)), run(3, {1: 2.0, 2: 2.0}, judged=(1, 2))]
    assert verbs(ASHA.decide([resumed, *others])) == {(2, 2): "stop"}  # judged again at the next rung only
    assert ASHA.decide([run(2, {1: 9.0}, judged=(1,)), run(1, {1: 1.0}, judged=(1,))]) == []


def test_values_of_runs_that_left_the_schedule_still_count_but_they_are_not_judged() -> None:
    runs = [
        run(1, {1: 1.0}, state="failed"),
        run(2, {1: 0.5}, state="stopped"),
        run(3, {1: 2.0}),
        run(4, {1: 1.5}, judged=(1,)),
    ]
    (decision,) = ASHA.decide(runs)
    assert (decision.run_id, decision.verb, decision.cohort, decision.rank) == (3, "stop", 4, 4)


def test_the_best_run_still_training_is_never_stopped_by_runs_that_left() -> None:
    runs = [run(1, {1: 1.0}, state="completed"), run(2, {1: 0.5}, state="stopped"), run(3, {1: 2.0})]
    (decision,) = ASHA.decide(runs)
    assert decision.verb == "continue" and decision.rank == 3
    assert decision.reason.endswith(
        "only the best 1 go on (cutoff 0.5), but no run still training beats it: goes on"
    )


def test_a_warm_clone_is_judged_only_at_rungs_it_trained_itself() -> None:
    parent = run(1, {1: 1.0, 2: 1.0}, judged=(1, 2), state="running")
    clone = run(5, {3: 0.1, 4: 3.0}, done=4)  # started at chunk 2 from run 1's weights
    assert verbs(ASHA.decide([parent, clone])) == {(5, 4): "continue"}  # fewer values than eta at 4


def test_a_cold_clone_added_late_meets_the_whole_history_of_each_rung() -> None:
    runs = [run(i, {1: float(i)}, judged=(1,), state="completed") for i in (1, 2, 4)]
    runs += [run(3, {1: 3.0, 2: 3.0}, judged=(1, 2)), run(5, {1: 3.5})]  # 3 trains on; 5 is a late clone
    (decision,) = ASHA.decide(runs)
    assert (decision.run_id, decision.verb, decision.cohort, decision.rank) == (5, "stop", 5, 4)


def test_decisions_are_deterministic_and_ordered_by_rung_then_run() -> None:
    runs = [run(i, {1: float(10 - i), 2: float(i)}) for i in range(1, 7)]
    first = ASHA.decide(runs)
    assert first == ASHA.decide(list(reversed(runs)))
    assert [(d.rung, d.run_id) for d in first] == sorted((d.rung, d.run_id) for d in first)


# Population based training


PBT = PopulationBasedTraining("eval_loss", interval=2, quantile=0.25, resample_probability=0.0, seed=1)


def test_pbt_points_are_every_interval_before_the_last_chunk() -> None:
    assert PBT.points_for(8) == [2, 4, 6]
    assert PBT.points_for(None) == [2]


def test_pbt_replaces_the_bottom_quantile_with_perturbed_clones_of_the_top() -> None:
    runs = [run(i, {2: float(i)}, lr=i * 1e-3) for i in range(1, 9)]  # run 1 best, run 8 worst
    decisions = {d.run_id: d for d in PBT.decide(runs)}
    assert {i for i, d in decisions.items() if d.verb == "replace"} == {7, 8}
    assert (decisions[7].parent_id, decisions[8].parent_id) == (1, 2)
    for weak, parent_lr in ((7, 1e-3), (8, 2e-3)):
        (new_lr,) = decisions[weak].changes.values()
        assert math.isclose(new_lr, parent_lr * 0.8) or math.isclose(new_lr, parent_lr * 1.2)
    assert decisions[8].cutoff == 7.0 and decisions[8].cohort == 8 and decisions[8].rank == 8
    assert "replaced by a warm clone of run 2 (2nd, 2) with learning_rate 0.002 -> " in decisions[8].reason
    assert all(d.verb == "continue" for i, d in decisions.items() if i <= 6)


def test_pbt_waits_for_the_cohort_at_each_point() -> None:
    runs = [run(1, {2: 1.0}), run(2, {2: 2.0}), run(3, {2: 3.0}), run(4, {1: 4.0}, done=1)]
    assert PBT.decide(runs) == []


def test_pbt_with_too_few_runs_exploits_nothing() -> None:
    decisions = PBT.decide([run(1, {2: 1.0}), run(2, {2: 2.0}), run(3, {2: 3.0})])
    assert {d.verb for d in decisions} == {"continue"} and "too few runs" in decisions[2].reason


def test_pbt_resamples_from_the_planned_values_with_its_probability() -> None:
    policy = PopulationBasedTraining(
        "eval_loss", interval=2, resample_probability=1.0, choices={LEARNING_RATE: [1e-3, 5e-4, 2e-4]}
    )
    runs = [run(i, {2: float(i)}, lr=1e-3) for i in range(1, 5)]
    (replace,) = [d for d in policy.decide(runs) if d.verb == "replace"]
    assert replace.changes[LEARNING_RATE] in (5e-4, 2e-4)  # a planned value other than the parent's


def test_pbt_keeps_an_integer_setting_an_integer_that_changes() -> None:
    """LoRA's r perturbed by x0.8 or x1.2 is rounded, and moved one step when rounding undoes it."""
    policy = PopulationBasedTraining("eval_loss", interval=2, perturb=("lora.r",), resample_probability=0.0)
    for r, allowed in ((8, {6, 10}), (2, {1, 3}), (1, {1, 2})):
        runs = [dataclasses.replace(run(i, {2: float(i)}), settings={"lora.r": r}) for i in range(1, 9)]
        for decision in policy.decide(runs):
            if decision.verb == "replace":
                (new,) = decision.changes.values()
                assert isinstance(new, int) and new in allowed, (r, new)


def test_pbt_draws_are_seeded_by_run_and_point() -> None:
    runs = [run(i, {2: float(i)}, lr=1e-3) for i in range(1, 9)]
    assert PBT.decide(runs) == PBT.decide(runs)
    other_seed = PopulationBasedTraining("eval_loss", interval=2, resample_probability=0.0, seed=2)
    changes = [[d.changes for d in p.decide(runs) if d.verb == "replace"] for p in (PBT, other_seed)]
    assert all(len(c) == 2 for c in changes)


def test_pbt_ties_at_the_cutoff_are_spared_and_nan_is_replaced_first() -> None:
    tied = [run(i, {2: v}) for i, v in [(1, 1.0), (2, 2.0), (3, 3.0), (4, 3.0)]]
    assert {d.verb for d in PBT.decide(tied)} == {"continue"}
    with_nan = [run(i, {2: v}) for i, v in [(1, 1.0), (2, math.nan), (3, 3.0), (4, 2.0)]]
    assert verbs(PBT.decide(with_nan))[(2, 2)] == "replace"


def test_pbt_parents_must_still_train_and_finished_runs_are_not_replaced() -> None:
    runs = [run(1, {2: 1.0}, state="stopped"), run(2, {2: 2.0}), run(3, {2: 3.0}), run(4, {2: 4.0})]
    decisions = {d.run_id: d for d in PBT.decide(runs)}
    assert decisions[4].verb == "continue" and "no stronger run is left to clone" in decisions[4].reason
    assert 1 not in decisions


def test_pbt_judges_a_clone_only_at_points_it_reaches_itself() -> None:
    population = [run(i, {2: float(i), 4: float(i)}, judged=(2,)) for i in (1, 2, 3)]
    clone = run(5, {3: 0.5}, done=3)  # a warm clone made at point 2, one chunk on
    assert PBT.decide([*population, clone]) == []  # it cannot reach point 2, and point 4 waits for it
    clone = run(5, {3: 0.5, 4: 9.0}, done=4)
    assert verbs(PBT.decide([*population, clone]))[(5, 4)] == "replace"


# The policies in the scheduler's loop (rfcli/engine/simulation.py)


def simulated_case(seed: int) -> tuple[dict[int, float], dict[int, list[float]], int]:
    rng = random.Random(seed)
    num_runs, chunks = rng.randint(2, 16), rng.choice([2, 4, 8])
    seconds = {run_id: rng.uniform(0.5, 2.0) for run_id in range(1, num_runs + 1)}
    quality = {run_id: rng.uniform(0.0, 1.0) for run_id in seconds}
    values = {r: [quality[r] + 1 / c + rng.gauss(0, 0.05) for c in range(1, chunks + 1)] for r in seconds}
    return seconds, values, chunks


@pytest.mark.parametrize("synchronous", [False, True])
def test_no_worker_waits_on_a_policy_while_a_run_could_train(synchronous: bool) -> None:
    policy = SuccessiveHalving("eval_loss", eta=2, synchronous=synchronous)
    for seed in range(60):
        seconds, values, chunks = simulated_case(seed)
        for workers in (1, 2, 4):
            result = simulate(seconds, chunks, workers, policy, values)
            assert result.idle_while_runnable == 0.0, (seed, workers)
            trained = Counter(span.run_id for span in result.timeline)
            finished = [run_id for run_id in seconds if trained[run_id] == chunks]
            assert finished and set(finished) | set(result.stopped) == set(seconds)


@pytest.mark.parametrize("policy", [None, SHA, ASHA], ids=["none", "sha", "asha"])
def test_a_search_refills_each_freed_slot_so_no_worker_waits_while_proposals_are_left(
    policy: SuccessiveHalving | None,
) -> None:
    for seed in range(40):
        seconds, values, chunks = simulated_case(seed)
        for workers in (1, 2, 4):
            for concurrent in (workers, workers + 3):
                result = simulate(seconds, chunks, workers, policy, values, concurrent)
                case = (seed, workers, concurrent)
                assert result.idle_while_budget_left == result.idle_while_runnable == 0.0, case
                trained = Counter(span.run_id for span in result.timeline)
                assert set(trained) == set(seconds), case  # every proposal made and trained
                spans = {
                    run_id: (
                        min(s.start for s in result.timeline if s.run_id == run_id),
                        max(s.end for s in result.timeline if s.run_id == run_id),
                    )
                    for run_id in trained
                }
                for start, _ in spans.values():  # never more than `concurrent` in the schedule at once
                    assert sum(1 for a, b in spans.values() if a <= start < b) <= concurrent, case
    fewer = simulate({run_id: 1.0 for run_id in range(1, 9)}, 2, num_workers=4, concurrent=2)
    assert fewer.idle_while_budget_left > 0  # concurrent below the workers: two of them wait


@pytest.mark.parametrize("synchronous", [False, True])
def test_with_one_worker_no_chunk_trains_past_a_rung_before_it_is_decided(synchronous: bool) -> None:
    policy = SuccessiveHalving("eval_loss", eta=2, synchronous=synchronous)
    for seed in range(30):
        seconds, values, chunks = simulated_case(seed)
        result = simulate(seconds, chunks, 1, policy, values)
        trained = Counter(span.run_id for span in result.timeline)
        for run_id in result.stopped:
            assert trained[run_id] in policy.rungs_for(chunks), (seed, run_id)
