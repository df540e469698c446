"""The policy in the loop of `rf run`: after each recorded chunk, read what the runs recorded at
chunk boundaries, ask the policy, and record each decision with the commands that carry it out.

A decision, its event and its commands (cause `policy`) are written in one transaction before
anything acts on them, keyed by run and rung: a `kill -9` before that transaction loses nothing
(the same recorded values give the same decision on the next `rf run`), and one after it repeats
nothing (the decision exists; its commands wait in the store like any other). The commands then
take the ordinary path: the controller applies them at the run's chunk boundary.
"""

from __future__ import annotations

from typing import Any

from rfcli.config.errors import did_you_mean
from rfcli.config.plan import flatten
from rfcli.config.policy import POLICY_META, policy_from_json
from rfcli.config.schema import PolicyConfig
from rfcli.policy.decisions import Decision, Policy, RunHistory
from rfcli.policy.halving import SuccessiveHalving
from rfcli.policy.pbt import PopulationBasedTraining
from rfcli.store.database import ExperimentStore, RunRecord
from rfcli.tracking.mlflow_tracker import MlflowTracker


def make_policy(config: PolicyConfig, runs: list[RunRecord]) -> Policy | None:
    """The policy the config names, or None; PBT draws from the values the plan gave each
    perturbed setting and is seeded by the experiment's seed."""
    if config.name in ("sha", "asha"):
        rungs = tuple(config.rungs) if config.rungs else None
        return SuccessiveHalving(config.metric, config.mode, config.eta, rungs, config.name == "sha")
    if config.name == "pbt":
        planned = [flatten(run.config) for run in runs if run.parent_id is None]
        choices = {key: sorted({flat[key] for flat in planned if key in flat}) for key in config.perturb}
        seed = int(runs[0].config.get("seed", 0)) if runs else 0
        return PopulationBasedTraining(
            config.metric,
            config.mode,
            config.interval,
            config.quantile,
            tuple(config.perturb),
            tuple(config.factors),
            config.resample_probability,
            choices,
            seed,
        )
    return None


class Judge:
    """Asks the experiment's policy for decisions and records them; does nothing without one."""

    def __init__(self, store: ExperimentStore, tracker: MlflowTracker) -> None:
        self.store = store
        self.tracker = tracker
        self.config = policy_from_json(store.get_meta(POLICY_META))
        self.policy = make_policy(self.config, store.runs())
        self.said_unrecorded = False
        """Whether this `rf run` said that a run recorded no value of the policy's metric."""

    def after_chunk(self) -> list[str]:
        """Record the decisions the recorded values call for now; one line per acting decision."""
        if self.policy is None:
            return []
        runs = {run.id: run for run in self.store.runs()}
        lines = []
        for decision in self.policy.decide(self.histories(list(runs.values()))):
            commands = [] if self.config.dry_run else self.commands(decision, runs)
            if not self.store.record_decision(decision, dry_run=self.config.dry_run, commands=commands):
                continue
            self.tag(runs[decision.run_id], decision)
            if decision.acts:
                prefix = "policy (dry run)" if self.config.dry_run else "policy"
                lines.append(f"run {decision.run_id}: {prefix}: {decision.reason}")
            elif decision.value is None and not self.said_unrecorded:
                self.said_unrecorded = True
                lines.append(self.unrecorded(decision))
        return lines

    def unrecorded(self, decision: Decision) -> str:
        """A policy that cannot see its metric acts on nothing: say so once, with what is recorded."""
        logged = sorted(self.store.latest_metrics(decision.run_id))
        return (
            f"run {decision.run_id}: policy: recorded no '{decision.metric}' at chunk {decision.rung}, so "
            f"the policy cannot judge it (it records {', '.join(logged) or 'nothing yet'})"
            f"{did_you_mean(decision.metric, logged)}; set policy.metric to one of those"
        )

    def histories(self, runs: list[RunRecord]) -> list[RunHistory]:
        assert self.policy is not None
        values = self.store.chunk_values(self.policy.metric)
        judged: dict[int, set[int]] = {}
        for recorded in self.store.decisions():
            judged.setdefault(recorded.decision.run_id, set()).add(recorded.decision.rung)
        return [
            RunHistory(
                run_id=run.id,
                state=run.state,
                chunks_done=run.chunks_done,
                total_chunks=run.total_chunks,
                values=values.get(run.id, {}),
                judged=frozenset(judged.get(run.id, ())),
                settings=numeric_settings(run.config, self.config.perturb),
            )
            for run in runs
        ]

    def commands(
        self, decision: Decision, runs: dict[int, RunRecord]
    ) -> list[tuple[str, int, dict[str, Any]]]:
        """stop: stop the run; replace: stop it and warm-clone the parent with the changes."""
        if decision.verb == "stop":
            return [("stop", decision.run_id, {})]
        if decision.verb != "replace":
            return []
        from rfcli.config.clone import clone_config

        assert decision.parent_id is not None
        parent = runs[decision.parent_id]
        overrides = [f"{key}={value!r}" for key, value in decision.changes.items()]
        config = clone_config(parent.config, parent.max_steps, overrides, parent.global_step)
        clone = {"config": config, "overrides": overrides, "warm": True}
        return [("stop", decision.run_id, {}), ("clone", parent.id, clone)]

    def tag(self, run: RunRecord, decision: Decision) -> None:
        """MLflow mirrors the store: the run's decision at each rung, and its latest."""
        if run.mlflow_run_id is None:
            return
        tags = {f"rf.policy.chunk_{decision.rung}": f"{decision.verb}: {decision.reason}"}
        if decision.acts:
            tags["rf.policy.decision"] = decision.verb + (" (dry run)" if self.config.dry_run else "")
        self.tracker.set_tags(run.mlflow_run_id, tags)


def numeric_settings(config: dict[str, Any], keys: list[str]) -> dict[str, int | float]:
    """The run's values of `keys` that are numbers, as they are (an integer stays one: PBT keeps it so)."""
    flat = flatten(config)
    return {
        key: flat[key]
        for key in keys
        if isinstance(flat.get(key), int | float) and not isinstance(flat.get(key), bool)
    }
