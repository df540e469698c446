"""What a worker holds of a run, and when it lets go: a run parks before the worker is handed back,
parked runs fit in a budget of host memory (beyond it they go through their checkpoints), and a
released run's trainer, optimizer and model are freed at once, not at some later collection."""

from __future__ import annotations

import dataclasses
import gc
import weakref
from pathlib import Path
from typing import Any

import pytest

from rfcli.engine.messages import ChunkDone, ChunkTrained, WorkerNotice, WorkerReply
from rfcli.engine.worker import Worker
from rfcli.trainers import session as session_module
from rfcli.trainers.parking import HostParking
from tests.unit.worker_orders import order


def done(sent: list[WorkerReply]) -> list[ChunkDone]:
    return [message for message in sent if isinstance(message, ChunkDone)]


def losses(sent: list[WorkerReply], run_id: int) -> list[tuple[int, float]]:
    return [
        (step, value)
        for d in done(sent)
        if d.run_id == run_id
        for step, key, value in d.metrics
        if key == "loss"
    ]


def test_a_run_parks_before_the_worker_is_handed_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events: list[str] = []

    def park(self: HostParking) -> bool:
        events.append("park")
        return True

    monkeypatch.setattr(HostParking, "park", park)
    hand_back = session_module.RunSession._hand_back

    def handed_back(self: session_module.RunSession, outcome: session_module.ChunkOutcome) -> None:
        events.append("handed back")
        hand_back(self, outcome)

    monkeypatch.setattr(session_module.RunSession, "_hand_back", handed_back)
    worker = Worker(0, tmp_path, lambda message: None)
    worker.train_chunk(order(1, lora=None))
    worker.wait_for_writes()
    assert events == ["park", "handed back"]
    worker.close()


def test_runs_beyond_the_host_budget_go_through_their_checkpoints_and_train_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a CPU nothing needs parking: each run here needs one byte, and the budget holds none."""
    monkeypatch.setattr(HostParking, "park", lambda self: self.budget.reserve(1))
    sent: list[WorkerReply] = []
    worker = Worker(0, tmp_path / "spilled", sent.append, parking=0)
    for run_id in (1, 2):
        assert worker.train_chunk(order(run_id, lora=None)) == ChunkTrained(0, run_id, chunk_index=1)
        assert run_id not in worker.sessions  # released: off the device before the next run
    notices = [message for message in sent if isinstance(message, WorkerNotice)]
    assert len(notices) == 1 and "host memory for parked runs is full (0.0 of 0.0 GiB" in notices[0].text
    for first in done(sent):
        worker.train_chunk(order(first.run_id, None, first.checkpoint, first.global_step))
    worker.wait_for_writes()
    assert [d.finished for d in done(sent)] == [False, False, True, True]

    kept: list[WorkerReply] = []
    parked = Worker(0, tmp_path / "parked", kept.append, parking=10)
    parked.train_chunk(order(1, lora=None))
    parked.train_chunk(dataclasses.replace(order(1, lora=None), global_step=2))
    parked.wait_for_writes()
    assert len(losses(kept, 1)) == 4
    assert losses(sent, 1) == losses(sent, 2) == losses(kept, 1)  # resumed from disk == from memory
    worker.close()
    parked.close()


@pytest.mark.parametrize("lora", [None, {"r": 4, "target_modules": "all-linear"}], ids=["full", "lora"])
def test_a_released_run_is_freed_at_once(tmp_path: Path, lora: dict[str, Any] | None) -> None:
    worker = Worker(0, tmp_path, lambda message: None)
    worker.train_chunk(order(1, lora))
    session = worker.sessions[1]
    session.wait_written()
    trainer = session.trainer
    held: dict[str, weakref.ref[Any]] = {
        "session": weakref.ref(session),
        "trainer": weakref.ref(trainer),
        "optimizer": weakref.ref(trainer.optimizer),
        "scheduler": weakref.ref(trainer.lr_scheduler),
    }
    if lora is None:
        held["model"] = weakref.ref(trainer.model)
    del session, trainer
    gc.disable()  # what is freed must be freed by the release itself
    try:
        worker.release(1)
        alive = sorted(name for name, ref in held.items() if ref() is not None)
    finally:
        gc.enable()
    assert alive == []
    worker.close()
