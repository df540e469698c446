"""The policy in the controller's loop, against a real store (no torch): decisions recorded with
their events and commands in one transaction, never lost or repeated across a `kill -9`."""

from __future__ import annotations

import json
import math
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from rfcli.config.policy import POLICY_META
from rfcli.engine.control import CommandApplier
from rfcli.engine.judging import Judge
from rfcli.policy.decisions import Decision
from rfcli.store.database import CHUNK_KEY, ExperimentStore
from rfcli.store.layout import ExperimentLayout
from tests.unit.conftest import run_killed_child

CONFIG = {"trainer": "sft", "seed": 3, "training": {"learning_rate": 1e-3}, "lora": {"r": 8}}
ASHA = {"name": "asha", "metric": "eval_loss", "mode": "min", "eta": 2}


class NoTracker:
    """The runs here never reach MLflow (no MLflow run id), so nothing may be tagged."""

    def set_tags(self, mlflow_run_id: str, tags: dict[str, str]) -> None:
        raise AssertionError("tagged a run that has no MLflow run")


def make_store(
    path: Path, policy: dict[str, Any], losses: dict[int, list[float | None]], metric: str = "eval_loss"
) -> ExperimentStore:
    """Runs 1..N, each with its chunks recorded (`metric` per chunk; None: not recorded)."""
    store = ExperimentStore(path)
    store.set_meta(POLICY_META, json.dumps(policy))
    for run_id, values in losses.items():
        store.add_run(run_id, CONFIG, f"fp{run_id}", name=str(run_id), cause="plan")
        store.set_plan_totals(run_id, 8, 16)
        for chunk, value in enumerate(values, start=1):
            rows = [(2 * chunk, CHUNK_KEY, float(chunk))]
            if value is not None:
                rows.append((2 * chunk, metric, value))
            store.record_chunk(run_id, chunks_done=chunk, global_step=2 * chunk, checkpoint="c", metrics=rows)
        store.set_state(run_id, "ready", cause="scheduler")
    return store


def judge(store: ExperimentStore) -> Judge:
    return Judge(store, NoTracker())  # type: ignore[arg-type]


def test_chunk_values_tell_nan_from_not_recorded(tmp_path: Path) -> None:
    with make_store(tmp_path / "state.db", ASHA, {1: [1.0, math.nan, None]}) as store:
        values = store.chunk_values("eval_loss")[1]
    assert values[1] == 1.0 and math.isnan(values[2]) and values[3] is None  # type: ignore[arg-type]


def test_a_decision_is_recorded_with_its_event_and_command_and_only_once(tmp_path: Path) -> None:
    with make_store(tmp_path / "state.db", ASHA, {1: [1.0], 2: [2.0]}) as store:
        lines = judge(store).after_chunk()
        assert lines == [
            "run 2: policy: at chunk 1, eval_loss 2 ranks 2nd of 2; only the best 1 go on (cutoff 1): stop"
        ]
        assert judge(store).after_chunk() == []
        recorded = store.decisions()
        assert [(r.decision.run_id, r.decision.rung, r.decision.verb) for r in recorded] == [
            (1, 1, "continue"),
            (2, 1, "stop"),
        ]
        (command,) = store.pending_commands()
        assert (command.verb, command.run_id, command.cause) == ("stop", 2, "policy")
        (event,) = [e for e in store.events(limit=50) if e.kind == "decision"]
        assert (event.run_id, event.cause) == (2, "policy") and "cutoff 1" in (event.detail or "")


def test_a_generation_metric_ranks_runs_highest_first(tmp_path: Path) -> None:
    policy = {**ASHA, "metric": "eval_token_f1", "mode": "max"}
    scores: dict[int, list[float | None]] = {1: [0.2], 2: [0.4]}
    with make_store(tmp_path / "state.db", policy, scores, metric="eval_token_f1") as store:
        (line,) = judge(store).after_chunk()
        assert line.startswith(
            "run 1: policy: at chunk 1, eval_token_f1 0.2 ranks 2nd of 2"
        ) and line.endswith(": stop")
        (command,) = store.pending_commands()
        assert (command.verb, command.run_id) == ("stop", 1)


def test_a_dry_run_records_decisions_without_commands(tmp_path: Path) -> None:
    with make_store(tmp_path / "state.db", {**ASHA, "dry_run": True}, {1: [1.0], 2: [2.0]}) as store:
        assert judge(store).after_chunk() == [
            "run 2: policy (dry run): at chunk 1, eval_loss 2 ranks 2nd of 2; only the best 1 go on "
            "(cutoff 1): stop"
        ]
        assert store.pending_commands() == []
        assert [r.dry_run for r in store.decisions()] == [True, True]
        (event,) = [e for e in store.events(limit=50) if e.kind == "decision"]
        assert (event.detail or "").startswith("dry run, not acted on: ")


def test_no_policy_decides_nothing(tmp_path: Path) -> None:
    with make_store(tmp_path / "state.db", {"name": "none"}, {1: [1.0], 2: [2.0]}) as store:
        assert judge(store).after_chunk() == [] and store.decisions() == []


def test_a_stop_applies_once_and_a_person_resuming_is_not_stopped_again(tmp_path: Path) -> None:
    with make_store(tmp_path / "state.db", ASHA, {1: [1.0], 2: [2.0]}) as store:
        applier = CommandApplier(store, ExperimentLayout(tmp_path), lambda run, verb, cause: None)
        judge(store).after_chunk()
        assert applier.apply_pending(busy=()) == ["run 2: stopped after chunk 1"]
        store.add_command("resume", 2, {}, cause="rf ctl")
        assert applier.apply_pending(busy=()) == ["run 2: resumed"]
        assert judge(store).after_chunk() == [] and store.pending_commands() == []
        assert store.run(2).state == "ready"


def test_a_store_without_the_decisions_table_gains_it(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    ExperimentStore(path).close()
    with sqlite3.connect(path) as db:  # as a store written before decisions were recorded
        db.execute("DROP TABLE decisions")
        db.execute("PRAGMA user_version = 1")
    with ExperimentStore(path) as store:
        assert store.decisions() == []


KILLED_CHILD = """
import os, signal, sys
from rfcli.engine.judging import Judge
from rfcli.store.database import ExperimentStore

store = ExperimentStore(sys.argv[1])
if sys.argv[2] == "inside":  # die inside the transaction, after the decision and its event
    def die(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGKILL)
    ExperimentStore._insert_command = die
Judge(store, None).after_chunk()
os.kill(os.getpid(), signal.SIGKILL)  # "after": decided and recorded, not yet acted on
"""


@pytest.mark.parametrize("where", ["inside", "after"])
def test_kill_9_while_deciding_neither_loses_nor_repeats_a_decision(tmp_path: Path, where: str) -> None:
    path = tmp_path / "state.db"
    make_store(path, ASHA, {1: [1.0], 2: [2.0]}).close()
    run_killed_child(KILLED_CHILD, str(path), where)
    with ExperimentStore(path) as store:
        decided = [(r.decision.run_id, r.decision.verb) for r in store.decisions()]
        if where == "inside":  # the stop rolled back whole: no decision, no event, no command
            assert decided == [(1, "continue")] and store.pending_commands() == []
            assert not [e for e in store.events(limit=50) if e.kind == "decision"]
        else:
            assert decided == [(1, "continue"), (2, "stop")] and len(store.pending_commands()) == 1
        # The next `rf run`: decides what is missing, applies what waits, each exactly once.
        judge(store).after_chunk()
        judge(store).after_chunk()
        CommandApplier(store, ExperimentLayout(tmp_path), lambda run, verb, cause: None).apply_pending(
            busy=()
        )
        stops = [(r.decision.run_id, r.decision.rung) for r in store.decisions() if r.decision.verb == "stop"]
        assert stops == [(2, 1)]
        assert [e.run_id for e in store.events(limit=50) if e.kind == "decision"] == [2]
        assert [e.run_id for e in store.events(limit=50) if e.kind == "stopped"] == [2]
        assert store.pending_commands() == []


def test_recorded_decisions_read_back_as_decided(tmp_path: Path) -> None:
    decision = Decision(
        4, 2, "replace", "eval_loss", math.nan, 8, 8, 3.5, "why", 1, {"training.learning_rate": 2e-3}
    )
    with make_store(tmp_path / "state.db", ASHA, {4: [1.0], 1: [1.0]}) as store:
        assert store.record_decision(decision, dry_run=False, commands=[])
        assert not store.record_decision(decision, dry_run=False, commands=[("stop", 4, {})])
        (recorded,) = store.decisions()
    assert math.isnan(recorded.decision.value)  # type: ignore[arg-type]
    assert recorded.decision.changes == {"training.learning_rate": 2e-3}
    assert (recorded.decision.parent_id, recorded.decision.cutoff, recorded.dry_run) == (1, 3.5, False)
