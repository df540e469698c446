"""The controller's bookkeeping on disk, without torch: which checkpoints stay, and what a kill at
the worst moment leaves for the next `rf run`."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from rfcli.engine.controller import Controller
from rfcli.engine.messages import ChunkDone, ChunkFailed, ChunkTrained, TrainChunk, WorkerReply
from rfcli.store.database import ExperimentStore
from rfcli.store.layout import ExperimentLayout
from tests.processes import run_until_killed
from tests.unit.controller_harness import (
    CHUNKS,
    MAX_STEPS,
    STEPS_PER_CHUNK,
    InstantPool,
    MemoryTracker,
    chunk_rows,
    loss_at,
    make_controller,
    make_store,
    run_to_the_end,
)

FULL = "no space left on device (runs/1/checkpoints/.staging/checkpoint-8/optimizer.pt)"


@pytest.fixture
def layout(tmp_path: Path) -> ExperimentLayout:
    return ExperimentLayout(tmp_path)


@pytest.fixture
def store(layout: ExperimentLayout) -> Iterator[ExperimentStore]:
    with ExperimentStore(layout.state_db) as opened:
        for run_id in (1, 2):
            opened.add_run(run_id, {"training": {}}, f"fp{run_id}", name=str(run_id), cause="plan")
        yield opened


@pytest.fixture
def controller(layout: ExperimentLayout, store: ExperimentStore) -> Controller:
    return make_controller(store, InstantPool(layout.folder))


def test_a_run_keeps_its_last_two_checkpoints_and_never_loses_the_one_the_store_points_to(
    layout: ExperimentLayout, store: ExperimentStore, controller: Controller
) -> None:
    kept = []
    for chunk, step in enumerate((5, 10, 15, 20), start=1):
        checkpoint = layout.checkpoints(1) / f"checkpoint-{step}"
        (checkpoint / "run_1").mkdir(parents=True)
        store.set_state(1, "running", cause="scheduler", worker=0)
        controller.record(
            ChunkDone(0, 1, chunk, 4, step, 20, str(checkpoint), step == 20, 1.0, 0.0, 0.1, 0.0)
        )
        assert store.run(1).checkpoint == str(checkpoint) and checkpoint.is_dir()
        kept.append(sorted(path.name for path in layout.checkpoints(1).iterdir()))
    assert kept == [
        ["checkpoint-5"],
        ["checkpoint-10", "checkpoint-5"],
        ["checkpoint-10", "checkpoint-15"],
        ["checkpoint-15", "checkpoint-20"],
    ]


def test_recovery_removes_what_a_kill_left_of_a_deleted_run(
    layout: ExperimentLayout, store: ExperimentStore, controller: Controller
) -> None:
    for run_id in (1, 2):
        (layout.checkpoints(run_id) / "checkpoint-5").mkdir(parents=True)
    store.set_state(1, "deleted", cause="rf ctl")
    controller.recover()
    assert not layout.run_folder(1).exists()
    assert (layout.checkpoints(2) / "checkpoint-5").is_dir()


@pytest.mark.parametrize("verb", ["stop", "delete"])
def test_a_stopped_or_deleted_run_is_released_from_the_worker_it_is_parked_on(
    layout: ExperimentLayout, store: ExperimentStore, verb: str
) -> None:
    pool = InstantPool(layout.folder, workers=0)  # nothing else happens: no worker to dispatch to
    controller = make_controller(store, pool)
    controller.placement.parked.update({1: (0, 5), 2: (1, 5)})
    store.add_command(verb, 1, {}, cause="key")

    controller.steer_and_dispatch()

    assert pool.released == [1]
    assert controller.placement.parked == {2: (1, 5)}


# -- the last chunk's record and the run's `completed` state ------------------------------------

KILLED_RECORDING_LAST_CHUNK = """
import os, signal, sys
from pathlib import Path
from types import SimpleNamespace
from rfcli.store.database import ExperimentStore
from tests.unit.controller_harness import InstantPool, chunk_done, make_controller

folder = Path(sys.argv[1])
store = ExperimentStore(folder / "state.db")
original = ExperimentStore.set_state
def set_state(self, run_id, state, **kwargs):
    if state == "completed":  # between the chunk's record and the run's new state
        os.kill(os.getpid(), signal.SIGKILL)
    original(self, run_id, state, **kwargs)
ExperimentStore.set_state = set_state
controller = make_controller(store, InstantPool(folder))
controller.placement.busy[1] = 0
checkpoint = folder / "runs" / "1" / "checkpoints" / "checkpoint-16"
checkpoint.mkdir(parents=True)
controller.record(chunk_done(1, 4, checkpoint))
"""


def three_chunks_recorded(folder: Path) -> ExperimentStore:
    """Run 1 training its last chunk (3 of 4 recorded), as `rf run` left it."""
    store = make_store(folder, run_ids=(1,))
    store.set_plan_totals(1, CHUNKS, MAX_STEPS)
    store.set_state(1, "running", cause="scheduler", worker=0)
    checkpoint = ExperimentLayout(folder).checkpoints(1) / "checkpoint-12"
    checkpoint.mkdir(parents=True)
    rows = chunk_rows(1, 12)
    store.record_chunk(1, chunks_done=3, global_step=12, checkpoint=str(checkpoint), metrics=rows)
    return store


def test_a_kill_between_the_last_chunks_record_and_completed_leaves_a_run_that_finishes(
    tmp_path: Path,
) -> None:
    three_chunks_recorded(tmp_path).close()
    run_until_killed(KILLED_RECORDING_LAST_CHUNK, tmp_path)
    with ExperimentStore(tmp_path / "state.db") as store:
        run = store.run(1)
        assert (run.state, run.chunks_done) == ("running", 3), "the chunk and the state commit together"
        pool = InstantPool(tmp_path)
        run_to_the_end(make_controller(store, pool, MemoryTracker()))
        run = store.run(1)
        assert (run.state, run.chunks_done, run.global_step) == ("completed", 4, 16)
        assert pool.trained == [(1, 4)]  # the chunk the kill lost, trained again
        assert [(step, value) for step, key, value in store.metrics(1) if key == "loss"] == [
            (step, loss_at(step)) for step in range(1, 17)
        ]


def test_recovery_completes_a_run_whose_last_chunk_was_recorded_without_its_state(tmp_path: Path) -> None:
    with three_chunks_recorded(tmp_path) as store:
        checkpoint = ExperimentLayout(tmp_path).checkpoints(1) / "checkpoint-16"
        checkpoint.mkdir()
        store.record_chunk(1, chunks_done=4, global_step=16, checkpoint=str(checkpoint), metrics=[])
        store.set_state(1, "ready", cause="recovery")  # what an older rf left after such a kill
        pool = InstantPool(tmp_path)
        run_to_the_end(make_controller(store, pool, MemoryTracker()))
        assert store.run(1).state == "completed" and pool.trained == []
        event = store.events(limit=1, run_id=1)[0]
        assert (event.kind, event.cause) == ("completed", "recovery")
        assert event.detail == "its last chunk (4) was recorded before rf run stopped"


# -- a failure of the machine pauses the experiment; no run fails ---------------------------------


def test_a_full_disk_under_a_chunk_pauses_the_experiment_and_the_next_rf_run_continues(
    tmp_path: Path,
) -> None:
    with make_store(tmp_path) as store:
        pool = InstantPool(tmp_path)
        train = pool.train

        def disk_full_at_chunk_2(worker: int, order: TrainChunk) -> list[WorkerReply]:
            if order.global_step == STEPS_PER_CHUNK:  # writing chunk 2's checkpoint fails
                error = "OSError: [Errno 28] No space left on device"
                return [
                    ChunkTrained(worker, order.run_id, 2),
                    ChunkFailed(worker, order.run_id, error, [], FULL),
                ]
            return train(worker, order)

        pool.answer = disk_full_at_chunk_2
        tracker = MemoryTracker()
        paused = make_controller(store, pool, tracker)
        run_to_the_end(paused)
        assert paused.paused == FULL
        assert [(run.state, run.chunks_done, run.error) for run in store.runs()] == [("ready", 1, None)] * 2
        assert pool.trained == [(1, 1), (2, 1)]  # nothing new started once the disk was full
        event = store.events(limit=1)[0]
        assert (event.run_id, event.kind, event.cause, event.detail) == (None, "paused", "machine", FULL)

        pool.answer = train  # space freed: a plain `rf run` continues by itself
        run_to_the_end(make_controller(store, pool, tracker))
        assert [(run.state, run.chunks_done) for run in store.runs()] == [("completed", CHUNKS)] * 2
        assert [row for row in store.metrics(1) if row[1] == "loss"] == chunk_rows(1, MAX_STEPS)[1::2]


def test_a_full_disk_under_the_store_pauses_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with make_store(tmp_path) as store:

        def full(*args: object, **kwargs: object) -> None:
            raise sqlite3.OperationalError("database or disk is full")

        tracker = MemoryTracker()
        with monkeypatch.context() as patched:
            patched.setattr(ExperimentStore, "record_chunk", full)
            controller = make_controller(store, InstantPool(tmp_path), tracker)
            run_to_the_end(controller)
            controller.shutdown()
        assert controller.paused == "no space left on device"
        assert [run.state for run in store.runs()] == ["running", "pending"]  # as a kill leaves it
        run_to_the_end(make_controller(store, InstantPool(tmp_path), tracker))
        assert [run.state for run in store.runs()] == ["completed"] * 2


def test_a_run_with_no_learning_signal_gets_one_warning_event(
    layout: ExperimentLayout, store: ExperimentStore
) -> None:
    announced: list[str] = []
    pool = SimpleNamespace(experiment=layout.folder, workers=[], send=lambda worker, message: None)
    controller = Controller(store, tracker=None, pool=pool, announce=announced.append)  # type: ignore[arg-type]
    flat = [(step, "frac_reward_zero_std", 1.0) for step in (1, 2)] + [(2, "reward", 0.0), (1, "reward", 0.0)]
    store.set_config(1, {"trainer": "grpo", "training": {}}, fresh_optimizer_step=None)
    for chunk, step in ((1, 2), (2, 4)):
        store.set_state(1, "running", cause="scheduler", worker=0)
        checkpoint = layout.checkpoints(1) / f"checkpoint-{step}"
        checkpoint.mkdir(parents=True)
        done = ChunkDone(0, 1, chunk, 4, step, 8, str(checkpoint), False, 1.0, 0.0, 0.1, 0.0, flat)
        controller.record(done)
    [warning] = store.events(run_id=1, kind="warning")
    assert warning.cause == "rf run"
    assert warning.detail is not None and warning.detail.startswith("no learning signal in chunk 1")
    assert [line for line in announced if "warning" in line] == [f"run 1: warning: {warning.detail}"]
