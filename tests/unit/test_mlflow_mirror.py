"""What MLflow shows equals what the store holds, after a kill between batches, a kill between making
an MLflow run and recording it, and a retry: the controller's loop on instant workers, a real MLflow
(SQLite) behind it, and a tracker that dies where a kill would stop it."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rfcli.engine.control import CommandApplier
from rfcli.engine.messages import ChunkFailed, TrainChunk, WorkerReply
from rfcli.store.database import ExperimentStore
from rfcli.store.layout import ExperimentLayout
from rfcli.tracking import mlflow_tracker
from rfcli.tracking.mlflow_tracker import MlflowTracker, default_tracking_uri
from tests.unit.controller_harness import (
    InstantPool,
    chunk_rows,
    make_controller,
    make_store,
    run_to_the_end,
)


class Killed(BaseException):
    """Where a `kill -9` would have stopped `rf run`."""


@pytest.fixture(scope="module")
def tracking_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    # One MLflow store for the module (creating one takes about 1.5 s); an experiment per test.
    return default_tracking_uri(tmp_path_factory.mktemp("mlflow"))


@pytest.fixture
def tracker(tracking_uri: str, request: pytest.FixtureRequest) -> MlflowTracker:
    return MlflowTracker(tracking_uri, request.node.name)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ExperimentStore]:
    with make_store(tmp_path, run_ids=(1,)) as opened:
        yield opened


def die_after_batches(tracker: MlflowTracker, monkeypatch: pytest.MonkeyPatch, batches: int) -> None:
    """The tracker's client sends `batches` metric batches, then the process dies."""
    client = tracker._client  # noqa: SLF001 - the batches are the client's calls
    log_batch = client.log_batch
    sent = [0]

    def dying_log_batch(run_id: str, **kwargs: Any) -> Any:
        if kwargs.get("metrics"):
            if sent[0] == batches:
                raise Killed
            sent[0] += 1
        return log_batch(run_id, **kwargs)

    monkeypatch.setattr(client, "log_batch", dying_log_batch)


def shown_rows(tracker: MlflowTracker, rf_run_id: int) -> list[tuple[int, str, float]]:
    """Every metric row (duplicates kept) of the one active MLflow run tagged with the rf run's id."""
    shown = tracker.runs_tagged("rf.run_id", str(rf_run_id))
    assert len(shown) == 1, f"rf run {rf_run_id} shows as {len(shown)} MLflow runs"
    return tracker.logged_rows(shown[0][0])


def same_rows(store: ExperimentStore, tracker: MlflowTracker, run_id: int) -> None:
    def comparable(rows: list[tuple[int, str, float]]) -> list[tuple[int, str, float | str]]:
        return sorted((step, key, "nan" if math.isnan(value) else value) for step, key, value in rows)

    assert comparable(shown_rows(tracker, run_id)) == comparable(store.metrics(run_id))


def recorded_chunk(store: ExperimentStore, run_id: int) -> None:
    """A run with its first two chunks recorded, not yet in MLflow: 2 rows a step, and an
    `eval_loss` (sorted before both) at each chunk's end."""
    store.add_run(run_id, store.run(1).config, f"fp{run_id}", name=str(run_id), cause="plan")
    rows = chunk_rows(1, 8) + [(4, "eval_loss", 0.4), (8, "eval_loss", 0.8)]
    store.record_chunk(run_id, chunks_done=2, global_step=8, checkpoint="c", metrics=rows)


@pytest.mark.parametrize("batch", [3, 4, 5])
def test_a_kill_between_two_batches_leaves_no_step_doubled_or_dropped(
    tmp_path: Path,
    store: ExperimentStore,
    tracker: MlflowTracker,
    monkeypatch: pytest.MonkeyPatch,
    batch: int,
) -> None:
    """Every place a kill can cut 18 rows sent in batches of 3, 4 or 5: inside a step and between
    steps, before and after each step's `loss`."""
    monkeypatch.setattr(mlflow_tracker, "MAX_METRICS_PER_BATCH", batch)
    for run_id, cut in enumerate(range(1, math.ceil(18 / batch)), start=2):
        recorded_chunk(store, run_id)
        controller = make_controller(store, InstantPool(tmp_path), tracker)
        controller.unsynced.add(run_id)
        with monkeypatch.context() as patched:
            die_after_batches(tracker, patched, cut)
            with pytest.raises(Killed):
                controller.flush_mlflow()
        make_controller(store, InstantPool(tmp_path), tracker).recover()  # the next `rf run`
        same_rows(store, tracker, run_id)


def test_an_mlflow_run_made_but_not_recorded_before_a_kill_is_not_shown_twice(
    tmp_path: Path, store: ExperimentStore, tracker: MlflowTracker, monkeypatch: pytest.MonkeyPatch
) -> None:
    def killed(*args: Any) -> None:
        raise Killed

    with monkeypatch.context() as patched:
        patched.setattr(ExperimentStore, "set_mlflow_run", killed)
        with pytest.raises(Killed):
            run_to_the_end(make_controller(store, InstantPool(tmp_path), tracker))
    run_to_the_end(make_controller(store, InstantPool(tmp_path), tracker))
    assert store.run(1).state == "completed"
    same_rows(store, tracker, 1)


def fail_chunk(pool: InstantPool, run_id: int, chunk: int) -> None:
    """The run's chunk `chunk` fails after two steps whose loss is NaN, once."""
    train = pool.train

    def answer(worker: int, order: TrainChunk) -> list[WorkerReply]:
        if order.run_id == run_id and order.global_step == (chunk - 1) * 4:
            pool.answer = train
            step = order.global_step
            nan = [(step + 1, "loss", math.nan), (step + 2, "loss", math.nan)]
            return [ChunkFailed(worker, run_id, "NonFiniteLossError: loss is nan", nan)]
        return train(worker, order)

    pool.answer = answer


@pytest.mark.parametrize("attached", [False, True], ids=["rf ctl alone", "rf run attached"])
def test_after_a_retry_mlflow_shows_the_store_at_every_step(
    tmp_path: Path, store: ExperimentStore, tracker: MlflowTracker, attached: bool
) -> None:
    store.add_run(2, store.run(1).config, "fp2", name="2", cause="plan")  # trains on while 1 fails
    pool = InstantPool(tmp_path)
    fail_chunk(pool, 1, chunk=3)
    retry = {"config": store.run(1).config, "overrides": []}
    controller = make_controller(store, pool, tracker)
    if attached:

        def retry_once_failed() -> None:
            if store.run(1).state == "failed" and not store.pending_commands():
                store.add_command("retry", 1, retry, cause="rf ctl")

        controller.run(retry_once_failed)
    else:
        controller.run(lambda: None)
        assert store.run(1).state == "failed"
        store.add_command("retry", 1, retry, cause="rf ctl")
        CommandApplier(store, ExperimentLayout(tmp_path), on_change=None).apply_pending(busy=())
        run_to_the_end(make_controller(store, pool, tracker))
    assert store.run(1).state == "completed"
    assert [(step, value) for step, key, value in store.metrics(1) if key == "loss" and step in (9, 10)] == [
        (9, 1 / 9),
        (10, 1 / 10),
    ]
    same_rows(store, tracker, 1)
    same_rows(store, tracker, 2)
    ((earlier, tags),) = tracker.runs_tagged("rf.attempt_of", "1")
    assert tags["rf.error"] == "NonFiniteLossError: loss is nan"  # the failed attempt, kept as it was
    assert [step for step, key, value in tracker.logged_rows(earlier) if math.isnan(value)] == [9, 10]


def test_a_retry_that_failed_before_logging_trains_on_in_the_same_mlflow_run(
    tmp_path: Path, store: ExperimentStore, tracker: MlflowTracker
) -> None:
    pool = InstantPool(tmp_path)
    train = pool.train
    pool.answer = lambda worker, order: (
        [ChunkFailed(worker, 1, "OSError: data went missing")]
        if order.global_step == 8
        else train(worker, order)
    )
    make_controller(store, pool, tracker).run(lambda: None)
    first = store.run(1).mlflow_run_id
    store.add_command("retry", 1, {"config": store.run(1).config, "overrides": []}, cause="rf ctl")
    pool.answer = train
    run_to_the_end(make_controller(store, pool, tracker))
    assert store.run(1).mlflow_run_id == first and tracker.status(first or "") == "FINISHED"
    assert "rf.error" not in tracker.tags(first or "")
    same_rows(store, tracker, 1)
    assert [row for row in store.metrics(1) if row[1] in ("loss", "learning_rate")] == chunk_rows(1, 16)
