"""A model-based search in the controller's loop, against a real store (no torch): each free slot
gets a proposal recorded with its run and event in one transaction, never lost or repeated across
a `kill -9`, never more than `concurrent` in the schedule or `num_samples` in all."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from rfcli.cli.app import app
from rfcli.config.policy import POLICY_META
from rfcli.config.schema import PolicyConfig
from rfcli.engine.experiment import Experiment
from rfcli.engine.refill import Refill
from rfcli.search.proposer import SEARCH_META, SearchSettings
from rfcli.store.database import CHUNK_KEY, ExperimentStore
from tests.unit.conftest import run_killed_child

SPACE: dict[str, Any] = {
    "trainer": "sft",
    "training": {"learning_rate": {"loguniform": [1e-4, 1e-2]}, "max_steps": 8},
    "lora": {"r": {"choice": [4, 8, 16]}},
}
ASHA: dict[str, Any] = {"name": "asha", "metric": "eval_loss", "mode": "min", "eta": 2}


def search_store(
    path: Path, num_samples: int = 6, concurrent: int = 3, space: Any = None, budget: int | None = None
) -> ExperimentStore:
    store = ExperimentStore(path)
    settings = SearchSettings(
        "tpe", space or SPACE, num_samples, concurrent, 0, "eval_loss", "min", {"method": "tpe"}, budget
    )
    store.set_meta(SEARCH_META, settings.to_json())
    store.set_meta(POLICY_META, json.dumps(ASHA))
    return store


def refill(store: ExperimentStore) -> Refill:
    return Refill(store, validate=lambda config: None)


def record_chunk(store: ExperimentStore, run_id: int, chunk: int, value: float, state: str = "ready") -> None:
    store.set_state(run_id, "running", cause="scheduler", worker=0)
    rows = [(chunk, CHUNK_KEY, float(chunk)), (chunk, "eval_loss", value)]
    store.record_chunk(run_id, chunks_done=chunk, global_step=chunk, checkpoint="c", metrics=rows)
    store.set_state(run_id, state, cause="scheduler")


def test_every_slot_gets_a_proposal_recorded_with_its_run_and_event(tmp_path: Path) -> None:
    with search_store(tmp_path / "state.db") as store:
        lines = refill(store).fill_free_slots()
        assert lines == [f"run {k}: proposed (QMC start, {k} of 3)" for k in (1, 2, 3)]
        assert refill(store).fill_free_slots() == []  # every slot is taken
        proposals = store.proposals()
        assert [(p.number, p.run_id) for p in proposals] == [(1, 1), (2, 2), (3, 3)]
        created = [e for e in reversed(store.events(limit=50)) if e.kind == "created"]
        assert [(e.run_id, e.cause, e.detail) for e in created] == [
            (k, "search", f"QMC start, {k} of 3") for k in (1, 2, 3)
        ]
        run = store.run(1)
        assert run.state == "pending" and run.config["search"] == {"method": "tpe"}
        assert run.config["policy"] == asdict(PolicyConfig(**ASHA))  # the policy that steers it
        assert run.config["training"]["max_steps"] == 8 and run.name.startswith("1 learning_rate=")


def test_a_freed_slot_gets_the_next_proposal_at_once_and_no_more_than_num_samples(tmp_path: Path) -> None:
    with search_store(tmp_path / "state.db") as store:
        refill(store).fill_free_slots()
        for run_id, value in ((1, 3.0), (2, 2.0), (3, 1.0)):
            record_chunk(store, run_id, 1, value)
        assert refill(store).fill_free_slots() == []
        store.set_state(2, "stopped", cause="policy")  # a policy stops one: its slot is free
        (line,) = refill(store).fill_free_slots()
        assert line == "run 4: proposed (TPE from 3 rung-1 values)"
        record_chunk(store, 3, 2, 0.5, state="completed")
        store.set_state(1, "running", cause="scheduler", worker=0)
        store.set_state(1, "failed", cause="error", error="NaN")
        assert len(refill(store).fill_free_slots()) == 2  # a completion and a failure
        for run_id in (4, 5, 6):
            store.set_state(run_id, "stopped", cause="rf ctl")
        assert refill(store).fill_free_slots() == []  # 6 proposals: the budget is spent
        assert len(store.proposals()) == 6 and not refill(store).proposals_left()


def test_nothing_is_proposed_once_the_budget_of_chunk_units_is_spent(tmp_path: Path) -> None:
    with search_store(tmp_path / "state.db", budget=7) as store:
        refill(store).fill_free_slots()
        for run_id in (1, 2, 3):
            record_chunk(store, run_id, 1, float(run_id))
        store.set_state(1, "stopped", cause="policy")
        assert len(refill(store).fill_free_slots()) == 1  # 3 trained + 2 in the schedule: 2 left
        record_chunk(store, 2, 2, 1.0)
        store.set_state(3, "stopped", cause="policy")
        assert len(refill(store).fill_free_slots()) == 1  # 4 trained + 2 in the schedule: 1 left
        record_chunk(store, 4, 1, 1.0)
        store.set_state(4, "stopped", cause="policy")
        assert refill(store).fill_free_slots() == [] and not refill(store).proposals_left()  # 5 + 2
        assert len(store.proposals()) == 5


def test_a_clone_holds_a_slot_and_is_no_proposal(tmp_path: Path) -> None:
    with search_store(tmp_path / "state.db") as store:
        refill(store).fill_free_slots()
        store.set_state(1, "stopped", cause="policy")
        store.add_run(4, store.run(2).config, "fp", name="4 clone of 2", parent_id=2, cause="policy")
        assert refill(store).fill_free_slots() == []  # PBT's replacement took the stopped run's place
        store.set_state(4, "deleted", cause="rf ctl")
        assert refill(store).fill_free_slots() == [
            "run 5: proposed (QMC start, 4: TPE takes over at 3 values at one rung (no run has recorded "
            "eval_loss yet))"
        ]


def test_a_proposal_the_plan_would_refuse_is_recorded_with_its_reason_and_no_run(tmp_path: Path) -> None:
    with search_store(tmp_path / "state.db", num_samples=4, concurrent=2) as store:
        refused = Refill(
            store, validate=lambda config: "lora.r: too big" if config["lora"]["r"] == 16 else None
        )
        lines = refused.fill_free_slots()
        proposals = store.proposals()
        (bad,) = [p for p in proposals if p.run_id is None]
        assert bad.error == "lora.r: too big" and f"proposal {bad.number} (" in " ".join(lines)
        assert len([p for p in proposals if p.run_id is not None]) == 2  # the slots are still filled
        (event,) = [e for e in store.events(limit=50) if e.kind == "proposal refused"]
        assert event.cause == "search" and (event.detail or "").endswith(": lora.r: too big")


def test_a_proposals_config_is_checked_as_a_plans_run(tmp_path: Path) -> None:
    config = {
        "name": "s",
        "trainer": "sft",
        "data": {"train": {"source": "recipes.qa_data:chatterbot_qa"}},
        "training": {"learning_rate": 1e-3, "per_device_train_batch_size": {"choice": [8, 0]}},
    }
    with search_store(tmp_path / "state.db", num_samples=3, concurrent=3, space=config) as store:
        Refill(store).fill_free_slots()
        outcomes = {p.params["training.per_device_train_batch_size"]: p.error for p in store.proposals()}
    assert outcomes[0] is None and "per_device_train_batch_size" in (outcomes[1] or ""), outcomes


def test_the_same_recorded_values_give_the_same_proposals_after_a_restart(tmp_path: Path) -> None:
    def sweep(path: Path) -> list[dict[str, Any]]:
        with search_store(path) as store:
            refill(store).fill_free_slots()
            for run_id, value in ((1, 3.0), (2, 2.0), (3, 1.0)):
                record_chunk(store, run_id, 1, value)
            store.set_state(1, "stopped", cause="policy")
        with ExperimentStore(path) as store:  # the next `rf run`
            refill(store).fill_free_slots()
            return [p.params for p in store.proposals()]

    assert sweep(tmp_path / "a.db") == sweep(tmp_path / "b.db")


KILLED_CHILD = """
import os, signal, sys
from rfcli.engine.refill import Refill
from rfcli.store.database import ExperimentStore

store = ExperimentStore(sys.argv[1])
if sys.argv[2] == "inside":  # die inside the second proposal's transaction: its run is in, the rest not
    add_run = ExperimentStore.add_run
    def die_after_the_second(self, run_id, *args, **kwargs):
        add_run(self, run_id, *args, **kwargs)
        if run_id == 2:
            os.kill(os.getpid(), signal.SIGKILL)
    ExperimentStore.add_run = die_after_the_second
Refill(store, validate=lambda config: None).fill_free_slots()
os.kill(os.getpid(), signal.SIGKILL)  # "after": recorded, not yet trained
"""


@pytest.mark.parametrize("where", ["inside", "after"])
def test_kill_9_while_proposing_neither_loses_nor_repeats_a_proposal(tmp_path: Path, where: str) -> None:
    with search_store(tmp_path / "reference.db") as store:
        refill(store).fill_free_slots()
        expected = [(p.number, p.run_id, p.params) for p in store.proposals()]
    search_store(tmp_path / "state.db").close()
    run_killed_child(KILLED_CHILD, str(tmp_path / "state.db"), where)
    with ExperimentStore(tmp_path / "state.db") as store:
        assert [p.number for p in store.proposals()] == ([1] if where == "inside" else [1, 2, 3])
        assert [run.id for run in store.runs()] == [p.run_id for p in store.proposals()]  # no run without one
        refill(store).fill_free_slots()  # the next `rf run`
        refill(store).fill_free_slots()
        assert [(p.number, p.run_id, p.params) for p in store.proposals()] == expected
        created = [e.run_id for e in reversed(store.events(limit=50)) if e.kind == "created"]
        assert created == [1, 2, 3]  # once each


def test_a_store_of_schema_2_gains_the_proposals_table(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    with ExperimentStore(path) as store:
        store.add_run(1, {"trainer": "sft"}, "fp1", name="1", cause="plan")
    with sqlite3.connect(path) as db:  # as a store written before proposals were recorded
        db.execute("DROP TABLE proposals")
        db.execute("PRAGMA user_version = 2")
    with ExperimentStore(path) as store:
        assert store.proposals() == [] and store.run(1).name == "1"
        assert Refill(store).fill_free_slots() == []  # no search: nothing proposed


def test_an_experiment_has_work_while_proposals_are_left(tmp_path: Path) -> None:
    with search_store(tmp_path / "state.db", num_samples=2, concurrent=2) as store:
        experiment = Experiment(tmp_path, store, tracker=None)  # type: ignore[arg-type]
        assert experiment.has_work()  # nothing proposed yet
        refill(store).fill_free_slots()
        for run_id in (1, 2):
            store.set_state(run_id, "stopped", cause="rf ctl")
        assert not experiment.has_work()


def test_rf_status_shows_the_search_and_its_proposals(tmp_path: Path) -> None:
    with search_store(tmp_path / "sweep" / "state.db") as store:
        refill(store).fill_free_slots()
    runner = CliRunner()
    out = runner.invoke(app, ["status", "sweep", "--dir", str(tmp_path)], env={"COLUMNS": "200"})
    assert (
        "search: tpe on eval_loss (min), 3 of 6 proposed, 3 at a time; latest: run 3, QMC start, 3 of 3"
        in out.output
    )
    document = json.loads(runner.invoke(app, ["status", "sweep", "--dir", str(tmp_path), "--json"]).output)
    assert [p["detail"] for p in document["search"]["proposals"]] == [
        f"QMC start, {k} of 3" for k in (1, 2, 3)
    ]
