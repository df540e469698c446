"""A worker that dies under a run: the run goes back to its last recorded chunk and the worker is
replaced; a second death at the same chunk fails the run. The controller with a stand-in pool and
tracker, on a real store: no worker process, no torch."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rfcli.engine.controller import Controller
from rfcli.store.database import ExperimentStore


class DyingPool:
    """Two workers; `dead` is what `dead_workers` reports until the worker is restarted."""

    def __init__(self, experiment: Path) -> None:
        self.experiment = experiment
        self.workers = [type("Handle", (), {"worker_id": index})() for index in range(2)]
        self.dead: dict[int, str] = {}
        self.restarted: list[int] = []
        self.sent: list[tuple[int, Any]] = []

    def describe(self) -> str:
        return "2 worker(s)"

    def send(self, worker_id: int, message: Any) -> None:
        self.sent.append((worker_id, message))

    def replies(self, timeout: float) -> list[Any]:
        return []

    def dead_workers(self) -> dict[int, str]:
        return dict(self.dead)

    def restart(self, worker_id: int) -> None:
        self.dead.pop(worker_id)
        self.restarted.append(worker_id)

    def shutdown(self, timeout: float = 10.0) -> None:
        pass


class NoTracker:
    def set_tags(self, run_id: str, tags: dict[str, str]) -> None:
        pass

    def end_run(self, run_id: str, status: str) -> None:
        pass


@pytest.fixture
def controller(tmp_path: Path) -> Iterator[Controller]:
    with ExperimentStore(tmp_path / "state.db") as store:
        store.add_run(1, {"trainer": "sft"}, "fp1", name="run-1", cause="plan")
        yield Controller(store, NoTracker(), DyingPool(tmp_path), lambda line: None)  # type: ignore[arg-type]


def train_on(controller: Controller, worker: int) -> None:
    controller.store.set_state(1, "running", cause="scheduler", worker=worker)
    controller.placement.busy[1] = worker


def test_the_run_of_a_dead_worker_trains_its_chunk_again_and_the_worker_is_replaced(
    controller: Controller,
) -> None:
    pool: DyingPool = controller.pool  # type: ignore[assignment]
    controller.placement.parked[2] = (1, 8)  # another run parked on the worker that dies
    train_on(controller, 1)
    pool.dead[1] = "exit code -9"

    controller.check_workers()

    run = controller.store.run(1)
    assert (run.state, run.worker, run.error) == ("ready", None, None)
    event = controller.store.events(limit=1)[0]
    assert (event.kind, event.cause) == ("ready", "recovery")
    assert event.detail == "worker 1 died (exit code -9) while training this run"
    assert pool.restarted == [1]
    assert controller.placement.busy == {} and controller.placement.parked == {}


def test_a_run_under_which_workers_die_twice_at_one_chunk_fails(controller: Controller) -> None:
    pool: DyingPool = controller.pool  # type: ignore[assignment]
    for worker in (0, 1):
        train_on(controller, worker)
        pool.dead[worker] = "exit code -9"
        controller.check_workers()

    run = controller.store.run(1)
    assert run.state == "failed"
    assert run.error == "worker 1 died (exit code -9) while training this run, twice at chunk 1"
    assert pool.restarted == [0, 1]
