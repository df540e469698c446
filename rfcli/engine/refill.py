"""A model-based search in the loop of `rf run`: a freed slot gets the next proposal at once.

At each turn of the controller (after a chunk is recorded, a command applied, a run failed), the
runs in the schedule (pending, ready, running) are counted. While there are fewer than
`concurrent` of them and fewer than `num_samples` proposals were made, the next one is made from
what the store holds (`search/proposer.py`) and recorded with the pending run it creates, its
event (cause `search`, saying how it was proposed) included, in one transaction, before anything
trains it. A `kill -9` before that transaction loses nothing (the same recorded values give the
same proposal on the next `rf run`); one after it repeats nothing (the proposal is recorded, and
its run waits like any other).

Every run in the schedule holds a slot, a clone included (a PBT replacement takes the place of the
run it replaces); only proposals count toward `num_samples`. A proposal's config is checked like a
plan's run: one that is refused is recorded with its reason and no run, and counts as tried.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import Any

from rfcli.config.errors import ConfigError
from rfcli.config.model_search import proposal_config
from rfcli.config.plan import build_run_config, config_fingerprint, flatten
from rfcli.config.policy import POLICY_META, policy_from_json
from rfcli.engine.experiment import run_name
from rfcli.search.proposer import (
    LEFT,
    PRIOR_META,
    SEARCH_META,
    Observation,
    Prior,
    Proposal,
    SearchSettings,
    free_slots,
    next_proposal,
    observed_status,
)
from rfcli.search.space import parameters
from rfcli.store.database import CHUNK_KEY, SEARCH_CAUSE, ExperimentStore, ProposalRecord, RunRecord
from rfcli.store.states import UNFINISHED


def config_problem(config: dict[str, Any]) -> str | None:
    """Why a proposal's config would be refused as a plan's run, or None when it is valid."""
    try:
        build_run_config(config)
    except ConfigError as error:
        return "; ".join(error.lines())
    return None


class Refill:
    """Makes and records the proposals that fill free slots; does nothing without a model-based search."""

    def __init__(
        self, store: ExperimentStore, validate: Callable[[dict[str, Any]], str | None] = config_problem
    ) -> None:
        self.store = store
        stored = store.get_meta(SEARCH_META)
        self.settings = SearchSettings.from_json(stored) if stored else None
        self.prior = Prior.from_json(store.get_meta(PRIOR_META))
        self.validate = validate
        self.spent = False
        """Set when the space had no new configuration left: nothing more is asked this `rf run`."""

    def proposals_left(self) -> bool:
        if self.settings is None or len(self.store.proposals()) >= self.settings.num_samples:
            return False
        active = sum(run.state in UNFINISHED for run in self.store.runs())
        return self.settings.budget is None or self.trained() + active < self.settings.budget

    def trained(self) -> int:
        """Chunk-units so far: the chunks each run trained itself."""
        return sum(len(chunks) for chunks in self.store.chunk_values(CHUNK_KEY).values())

    def fill_free_slots(self) -> list[str]:
        """Propose and record until every slot is taken or the budget is spent; one line each."""
        lines: list[str] = []
        while self.settings is not None and not self.spent:
            runs, recorded = self.store.runs(), self.store.proposals()
            active = sum(run.state in UNFINISHED for run in runs)
            settings = self.settings
            trained = self.trained() if settings.budget is not None else 0
            slots = free_slots(
                active, len(recorded), settings.concurrent, settings.num_samples, trained, settings.budget
            )
            if not slots:
                break
            lines.append(self.propose(settings, runs, recorded))
        return lines

    def propose(self, settings: SearchSettings, runs: list[RunRecord], recorded: list[ProposalRecord]) -> str:
        attrs = recorded[-1].study_attrs if recorded else None
        proposal = next_proposal(settings, self.prior, self.observations(runs, recorded), attrs)
        if proposal is None:
            self.spent = True
            detail = f"no configuration left in the space that is not proposed yet, after {len(recorded)}"
            self.store.add_event(None, "search spent", SEARCH_CAUSE, detail)
            return f"search: {detail}"
        policy = asdict(policy_from_json(self.store.get_meta(POLICY_META)))
        config = proposal_config(settings, proposal, policy)
        error = self.validate(config)
        run_id = None if error else self.store.next_run_id()  # only the lock's holder adds runs
        record = ProposalRecord(
            proposal.number,
            run_id,
            proposal.params,
            proposal.detail,
            proposal.trial_attrs,
            proposal.study_attrs,
            error,
            time.time(),
        )
        if run_id is None:
            self.store.record_proposal(record, None)
            return f"proposal {proposal.number} ({proposal.detail}) refused: {error}"
        name = proposal_name(run_id, settings, proposal)
        self.store.record_proposal(record, (config, config_fingerprint(config), name))
        return f"run {run_id}: proposed ({proposal.detail})"

    def observations(
        self, runs: Sequence[RunRecord], recorded: Sequence[ProposalRecord]
    ) -> list[Observation]:
        """Every proposal so far and what its run recorded (a refused one: nothing)."""
        assert self.settings is not None
        values = self.store.chunk_values(self.settings.metric)
        judged_out = self.store.judged_out()
        states = {run.id: run.state for run in runs}
        observations = []
        for proposal in recorded:
            run_id = proposal.run_id
            if run_id is None:
                observations.append(Observation(proposal.params, {}, LEFT, proposal.trial_attrs))
                continue
            status = observed_status(states[run_id], run_id in judged_out)
            observations.append(
                Observation(proposal.params, values.get(run_id, {}), status, proposal.trial_attrs)
            )
        return observations


def proposal_name(run_id: int, settings: SearchSettings, proposal: Proposal) -> str:
    """'9 learning_rate=0.0021 r=16': the run id and the values of the axes, as a planned run's."""
    names = [axis.name for axis in parameters(settings.space)]
    flat = flatten(proposal.config)
    varying = [key for key in flat if any(key == name or key.startswith(f"{name}.") for name in names)]
    return run_name(run_id, flat, varying)
