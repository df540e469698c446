"""Proposals from recorded rung values (rfcli/search/proposer.py): one test per rule, pure (no torch,
no store); Optuna's samplers behind them."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

from rfcli.search.proposer import (
    COMPLETED,
    IN_SCHEDULE,
    JUDGED_OUT,
    LEFT,
    Observation,
    Prior,
    PriorBest,
    Proposal,
    SearchSettings,
    fingerprint,
    free_slots,
    next_proposal,
    observed_status,
    rung_view,
    start_proposals,
)

SPACE: dict[str, Any] = {
    "training": {"learning_rate": {"loguniform": [1e-4, 1e-2]}},
    "lora": {"r": {"choice": [4, 8, 16, 32, 64]}, "lora_dropout": {"uniform": [0.0, 0.1]}},
}
NUMERIC = {"training": {"learning_rate": {"loguniform": [1e-4, 1e-2]}}, "lora": {"r": {"randint": [4, 64]}}}


def settings(method: str = "tpe", concurrent: int = 4, **changes: Any) -> SearchSettings:
    fields: dict[str, Any] = {
        "method": method,
        "space": SPACE,
        "num_samples": 24,
        "concurrent": concurrent,
        "seed": 0,
        "metric": "eval_loss",
        "mode": "min",
        **changes,
    }
    return SearchSettings(**fields)


def log_lr(params: dict[str, Any]) -> float:
    return math.log10(params["training.learning_rate"])


def search(
    chosen: SearchSettings, count: int, value: Callable[[dict[str, Any]], float], prior: Prior | None = None
) -> list[Proposal]:
    """`count` proposals, each recorded at once with its value at chunk 1, as a sweep of one worker would."""
    proposals: list[Proposal] = []
    earlier: list[Observation] = []
    for _ in range(count):
        attrs = proposals[-1].study_attrs if proposals else None
        proposal = next_proposal(chosen, prior or Prior(), earlier, attrs)
        assert proposal is not None
        proposals.append(proposal)
        earlier.append(
            Observation(proposal.params, {1: value(proposal.params)}, COMPLETED, proposal.trial_attrs)
        )
    return proposals


def test_the_first_slots_are_a_space_filling_start() -> None:
    start = start_proposals(settings(concurrent=4), Prior())
    assert [p.detail for p in start] == [f"QMC start, {k} of 4" for k in range(1, 5)]
    assert len({fingerprint(p.config) for p in start}) == 4
    # one Sobol sequence, continued where the last proposal left it (Optuna keeps its place on the study)
    assert [list(p.study_attrs.values()) for p in start] == [[], [0], [1], [2]]


def test_proposals_depend_on_the_recorded_rung_values() -> None:
    def toward(target: float) -> Callable[[dict[str, Any]], float]:
        return lambda params: abs(log_lr(params) - target)

    low, high = search(settings(), 16, toward(-4.0)), search(settings(), 16, toward(-2.0))
    assert [p.params for p in low[:4]] == [p.params for p in high[:4]]  # the start knows nothing yet
    assert low[4].detail == "TPE from 4 rung-1 values" and low[4].params != high[4].params
    later_low = sorted(log_lr(p.params) for p in low[8:])
    later_high = sorted(log_lr(p.params) for p in high[8:])
    assert later_low[len(later_low) // 2] < -3.2 < later_high[len(later_high) // 2]  # medians
    assert search(settings(), 16, toward(-4.0)) == low  # the same values: the same proposals


def test_the_sampler_sees_the_deepest_rung_with_enough_values() -> None:
    chosen = settings(concurrent=4)  # S = 4
    observations = [Observation({}, {1: 5.0 + i, 2: 4.0 + i}, IN_SCHEDULE) for i in range(4)]
    observations += [
        Observation({}, {1: 9.0}, JUDGED_OUT),  # a policy stopped it at chunk 1: the worst at chunk 2
        Observation({}, {1: 4.0, 2: math.nan}, JUDGED_OUT),  # NaN: the worst too
        Observation({}, {1: 5.5}, IN_SCHEDULE),  # still training: in flight
        Observation({}, {1: 5.5}, LEFT),  # a person stopped it: it tells nothing at chunk 2
        Observation({}, {}, IN_SCHEDULE),
    ]
    view = rung_view(observations, chosen)
    assert (view.rung, view.recorded, view.ranked_last, view.in_flight) == (2, 5, 1, [6, 8])
    assert view.values == {0: 4.0, 1: 5.0, 2: 6.0, 3: 7.0, 4: 7.0, 5: 7.0}
    maximizing = rung_view(observations, replace(chosen, mode="max"))
    assert maximizing.values[4] == maximizing.values[5] == 4.0
    assert rung_view(observations[:3], chosen).rung is None  # 3 values at chunk 2 and at 1: the start


def test_a_proposal_says_what_it_learned_from() -> None:
    chosen = settings(concurrent=3)
    earlier = [
        Observation(p.params, {1: 1.0 + i, 2: 2.0}, IN_SCHEDULE) for i, p in enumerate(search(chosen, 3, len))
    ]
    earlier[2] = replace(earlier[2], values={1: 3.0}, status=JUDGED_OUT)
    earlier.append(Observation(earlier[0].params | {"lora.r": 1}, {}, IN_SCHEDULE))
    proposal = next_proposal(chosen, Prior(), earlier)
    assert proposal is not None
    assert proposal.detail == "TPE from 3 rung-1 values, 1 in flight"
    earlier += [Observation(earlier[0].params | {"lora.r": 2}, {1: 1.0, 2: 2.0}, IN_SCHEDULE)]
    proposal = next_proposal(chosen, Prior(), earlier)
    assert proposal is not None
    assert proposal.detail == "TPE from 3 rung-2 values, 1 judged out before rung 2 ranked last, 1 in flight"


def test_a_proposal_repeats_nothing_and_a_spent_space_has_none_left() -> None:
    space = {"lora": {"r": {"choice": [4, 8, 16]}, "lora_alpha": {"choice": [8, 16]}}}
    chosen = settings(space=space, num_samples=6, concurrent=2)
    proposals: list[Proposal] = []
    earlier: list[Observation] = []
    while (proposal := next_proposal(chosen, Prior(), earlier)) is not None:
        proposals.append(proposal)
        earlier.append(Observation(proposal.params, {1: float(len(earlier))}, COMPLETED))
    assert len(proposals) == 6 and len({fingerprint(p.config) for p in proposals}) == 6


def test_a_prior_experiments_best_comes_first_and_its_runs_inform_the_sampler() -> None:
    earlier = search(settings(), 8, lambda params: abs(log_lr(params) + 2.5))
    observations = [Observation(p.params, {1: abs(log_lr(p.params) + 2.5)}, COMPLETED) for p in earlier]
    best = min(earlier, key=lambda p: abs(log_lr(p.params) + 2.5))
    prior = Prior(
        observations, [PriorBest(best.params, "best of prior experiment old: eval_loss 0.1 at chunk 1")]
    )
    first, second = search(settings(), 2, lambda params: 1.0, prior)
    assert (first.params, first.detail) == (
        best.params,
        "best of prior experiment old: eval_loss 0.1 at chunk 1",
    )
    assert (
        second.detail == "TPE from 9 rung-1 values"
    )  # the prior's 8 and the first proposal: no start needed
    assert Prior.from_json(prior.to_json()) == prior


@pytest.mark.parametrize("method", ["tpe", "gp", "cmaes", "qmc"])
def test_each_method_proposes_inside_the_space_and_the_same_again_from_the_same_values(method: str) -> None:
    chosen = settings(method, space=NUMERIC, num_samples=8)
    proposals = search(chosen, 6, lambda params: abs(log_lr(params) + 3))
    prefix = {"tpe": "TPE from", "gp": "GP from", "cmaes": "CMA-ES from", "qmc": "QMC, 6 of 8"}[method]
    assert proposals[-1].detail.startswith(prefix)
    for proposal in proposals:
        assert (
            1e-4 <= proposal.params["training.learning_rate"] <= 1e-2 and 4 <= proposal.params["lora.r"] <= 64
        )
    assert search(chosen, 6, lambda params: abs(log_lr(params) + 3)) == proposals


def test_cma_es_learns_across_proposals_from_what_each_trial_kept() -> None:
    chosen = settings("cmaes", space=NUMERIC, concurrent=2)
    proposals = search(chosen, 10, lambda params: abs(log_lr(params) + 3))  # a generation is 6 (4 + 3 ln 2)
    assert (
        proposals[-1].trial_attrs["cma:generation"] == 1
    )  # its first generation told, from the store's copy
    forgetful = [Observation(p.params, {1: 1.0}, COMPLETED) for p in proposals]
    again = next_proposal(chosen, Prior(), forgetful, proposals[-1].study_attrs)
    assert again is not None and again.trial_attrs["cma:generation"] == 0  # without them it starts over


def test_free_slots_fill_up_to_concurrent_and_num_samples() -> None:
    assert free_slots(active=0, proposed=0, concurrent=8, num_samples=24) == 8
    assert free_slots(active=5, proposed=10, concurrent=8, num_samples=24) == 3
    assert free_slots(active=2, proposed=22, concurrent=8, num_samples=24) == 2
    assert free_slots(active=9, proposed=12, concurrent=8, num_samples=24) == 0  # a resumed run on top
    assert free_slots(active=5, proposed=10, concurrent=8, num_samples=24, trained=30, budget=40) == 3
    assert free_slots(active=5, proposed=10, concurrent=8, num_samples=24, trained=34, budget=40) == 1
    assert free_slots(active=5, proposed=10, concurrent=8, num_samples=24, trained=36, budget=40) == 0


@pytest.mark.parametrize(
    ("state", "judged_out", "status"),
    [
        ("pending", False, IN_SCHEDULE),
        ("running", False, IN_SCHEDULE),
        ("completed", False, COMPLETED),
        ("stopped", True, JUDGED_OUT),
        ("failed", False, JUDGED_OUT),
        ("stopped", False, LEFT),
        ("deleted", False, LEFT),
    ],
)
def test_what_became_of_a_run(state: str, judged_out: bool, status: str) -> None:
    assert observed_status(state, judged_out) == status


def test_settings_keep_the_files_order_and_one_search_may_change_its_budget() -> None:
    chosen = settings()
    stored = SearchSettings.from_json(chosen.to_json())
    assert (
        stored == chosen
        and list(stored.space) == list(SPACE)
        and list(stored.space["lora"]) == ["r", "lora_dropout"]
    )
    assert chosen.same_search(replace(chosen, num_samples=48, concurrent=16))
    assert not chosen.same_search(replace(chosen, seed=1)) and not chosen.same_search(
        replace(chosen, method="gp")
    )
