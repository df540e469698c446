"""The experiment state store: every method, crash-safe chunk records, writers in many processes."""

from __future__ import annotations

import math
import multiprocessing
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from rfcli.config.errors import ConfigError
from rfcli.errors import NotFoundError
from rfcli.store.database import (
    SCHEMA_VERSION,
    CommandRecord,
    EventRecord,
    ExperimentStore,
    RecordNotFoundError,
    RunRecord,
)
from rfcli.store.experiments import experiment_folder, experiment_names, find_experiment
from rfcli.store.layout import STATE_DB
from rfcli.store.states import IllegalMove, RunState

CONFIG = {"trainer": "sft", "training": {"learning_rate": 1e-4, "max_steps": 40}, "lora": {"r": 8}}


@pytest.fixture
def store(tmp_path: Path):
    with ExperimentStore(tmp_path / "exp" / STATE_DB) as opened:
        yield opened


def add(store: ExperimentStore, run_id: int, **kwargs) -> None:
    store.add_run(run_id, CONFIG, f"fp{run_id}", name=f"run-{run_id}", cause="plan", **kwargs)


# -- opening -----------------------------------------------------------------------------------


def test_creates_folder_and_uses_wal_with_a_busy_timeout(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / STATE_DB
    with ExperimentStore(path) as store:
        assert path.is_file()
        assert store._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert store._db.execute("PRAGMA busy_timeout").fetchone()[0] >= 5000
        tables = {row[0] for row in store._db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert {"meta", "runs", "metrics", "events", "commands"} <= tables


def test_reopening_keeps_everything(tmp_path: Path) -> None:
    path = tmp_path / STATE_DB
    with ExperimentStore(path) as store:
        add(store, 1)
        store.set_meta("name", "sweep")
    with ExperimentStore(path) as store:
        assert [run.id for run in store.runs()] == [1]
        assert store.get_meta("name") == "sweep"


def test_refuses_a_store_from_a_newer_rf(tmp_path: Path) -> None:
    path = tmp_path / STATE_DB
    ExperimentStore(path).close()
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA user_version = 99")
    with pytest.raises(RuntimeError, match="newer rf"):
        ExperimentStore(path)


def test_a_version_2_store_gains_the_later_columns_and_tables_and_keeps_its_runs(tmp_path: Path) -> None:
    path = tmp_path / STATE_DB
    with ExperimentStore(path) as store:
        add(store, 1)
    with sqlite3.connect(path) as db:  # as rf wrote it before retries recorded a fresh optimizer
        db.execute("ALTER TABLE runs DROP COLUMN fresh_optimizer_step")
        db.execute("DROP TABLE proposals")
        db.execute("PRAGMA user_version = 2")
    with ExperimentStore(path) as store:
        assert [(run.id, run.fresh_optimizer_step) for run in store.runs()] == [(1, None)]
        store.set_config(1, {"training": {}}, fresh_optimizer_step=8)
        assert store.run(1).fresh_optimizer_step == 8
        assert store.proposals() == []
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_usable_from_another_thread(store: ExperimentStore) -> None:
    add(store, 1)
    results: list[RunRecord] = []
    thread = threading.Thread(target=lambda: results.append(store.run(1)))
    thread.start()
    thread.join()
    assert results[0].id == 1


# -- meta --------------------------------------------------------------------------------------


def test_meta(store: ExperimentStore) -> None:
    assert store.get_meta("name") is None
    store.set_meta("name", "sweep")
    store.set_meta("name", "sweep-2")
    assert store.get_meta("name") == "sweep-2"


# -- runs --------------------------------------------------------------------------------------


def test_add_run_and_read_it_back(store: ExperimentStore) -> None:
    before = time.time()
    add(store, 1)
    run = store.run(1)
    assert run == RunRecord(
        id=1,
        name="run-1",
        state=RunState.PENDING,
        config=CONFIG,
        fingerprint="fp1",
        parent_id=None,
        warm_start=False,
        chunks_done=0,
        total_chunks=None,
        global_step=0,
        max_steps=None,
        checkpoint=None,
        error=None,
        worker=None,
        mlflow_run_id=None,
        mlflow_synced_step=-1,
        created_at=run.created_at,
        updated_at=run.created_at,
    )
    assert before <= run.created_at <= time.time()
    assert run.progress is None
    [event] = store.events()
    assert (event.run_id, event.kind, event.cause, event.detail) == (1, "created", "plan", None)


def test_add_clone_records_parent_and_warm_start(store: ExperimentStore) -> None:
    add(store, 1)
    store.add_run(2, CONFIG, "fp2", name="clone", parent_id=1, warm_start=True, cause="user")
    clone = store.run(2)
    assert (clone.parent_id, clone.warm_start) == (1, True)
    assert store.events(limit=1)[0].detail == "clone of run 1 from its current weights"


def test_add_run_refuses_duplicates_and_unknown_parents(store: ExperimentStore) -> None:
    add(store, 1)
    with pytest.raises(ValueError, match="run 1 already exists"):
        add(store, 1)
    with pytest.raises(KeyError, match="no parent run 7"):
        add(store, 2, parent_id=7)
    assert [run.id for run in store.runs()] == [1]
    assert len(store.events()) == 1  # the refused adds left no event behind


def test_next_run_id(store: ExperimentStore) -> None:
    assert store.next_run_id() == 1
    add(store, 1)
    add(store, 5)
    assert store.next_run_id() == 6


def test_runs_in_id_order(store: ExperimentStore) -> None:
    for run_id in (3, 1, 2):
        add(store, run_id)
    assert [run.id for run in store.runs()] == [1, 2, 3]


def test_missing_run_says_which_runs_exist(store: ExperimentStore) -> None:
    with pytest.raises(KeyError, match="has no runs yet"):
        store.run(1)
    for run_id in (1, 2, 3, 5):
        add(store, run_id)
    with pytest.raises(RecordNotFoundError) as raised:
        store.run(9)
    assert str(raised.value) == f"no run 9 in {store.path}: its runs are 1-3, 5"


def test_set_state_writes_an_event_with_each_change(store: ExperimentStore) -> None:
    add(store, 1)
    store.set_state(1, "running", cause="scheduler", detail="chunk 1/4", worker=0)
    run = store.run(1)
    assert (run.state, run.worker) == ("running", 0)
    assert run.updated_at >= run.created_at
    store.set_state(1, "ready", cause="scheduler")
    assert store.run(1).worker is None
    store.set_state(1, "running", cause="scheduler", worker=1)
    store.set_state(1, "failed", cause="worker 1", error="CUDA out of memory")
    assert (store.run(1).state, store.run(1).error) == ("failed", "CUDA out of memory")
    store.set_state(1, "ready", cause="user")
    assert store.run(1).error is None

    events = store.events(run_id=1)
    assert [event.kind for event in events] == ["ready", "failed", "running", "ready", "running", "created"]
    assert [event.cause for event in events] == [
        "user",
        "worker 1",
        "scheduler",
        "scheduler",
        "scheduler",
        "plan",
    ]
    assert events[1].detail == "CUDA out of memory"  # the error stands in for a missing detail
    assert events[4].detail == "chunk 1/4"


def test_set_state_refuses_a_move_the_state_machine_does_not_allow(store: ExperimentStore) -> None:
    add(store, 1)
    with pytest.raises(IllegalMove, match="run 1 cannot go from pending to completed"):
        store.set_state(1, "completed", cause="scheduler")
    store.set_state(1, "deleted", cause="user")
    with pytest.raises(IllegalMove, match="a deleted run stays deleted"):
        store.set_state(1, "ready", cause="user")
    assert store.run(1).state == "deleted"
    assert [event.kind for event in store.events(run_id=1)] == ["deleted", "created"]


def test_set_state_refuses_unknown_states_and_runs(store: ExperimentStore) -> None:
    add(store, 1)
    with pytest.raises(ValueError, match="unknown run state 'paused'"):
        store.set_state(1, "paused", cause="user")
    with pytest.raises(KeyError, match="no run 2"):
        store.set_state(2, "stopped", cause="user")
    assert len(store.events()) == 1  # no event for a change that did not happen


def test_set_plan_totals_and_progress(store: ExperimentStore) -> None:
    add(store, 1)
    store.set_plan_totals(1, total_chunks=8, max_steps=400)
    store.record_chunk(1, chunks_done=3, global_step=150, checkpoint="ckpt/3", metrics=[])
    run = store.run(1)
    assert (run.total_chunks, run.max_steps, run.chunks_done, run.global_step) == (8, 400, 3, 150)
    assert run.progress == pytest.approx(3 / 8)
    with pytest.raises(KeyError):
        store.set_plan_totals(2, total_chunks=8, max_steps=400)


# -- chunks and metrics ------------------------------------------------------------------------


def test_record_chunk_stores_progress_checkpoint_and_metrics(store: ExperimentStore) -> None:
    add(store, 1)
    store.record_chunk(
        1,
        chunks_done=1,
        global_step=10,
        checkpoint="runs/1/chunk-1",
        metrics=[(5, "loss", 2.5), (10, "loss", 2.0), (10, "eval_loss", 2.2), (10, "learning_rate", 1e-4)],
    )
    run = store.run(1)
    assert (run.chunks_done, run.global_step, run.checkpoint) == (1, 10, "runs/1/chunk-1")
    assert store.metrics(1) == [
        (5, "loss", 2.5),
        (10, "eval_loss", 2.2),
        (10, "learning_rate", 1e-4),
        (10, "loss", 2.0),
    ]


def test_record_chunk_twice_keeps_one_row_per_step_and_key(store: ExperimentStore) -> None:
    add(store, 1)
    chunk = [(1, "loss", 3.0), (2, "loss", 2.9)]
    store.record_chunk(1, chunks_done=1, global_step=2, checkpoint="c1", metrics=chunk)
    # The controller crashed before it knew the record landed, and records the chunk again.
    store.record_chunk(
        1, chunks_done=1, global_step=2, checkpoint="c1", metrics=[(1, "loss", 3.0), (2, "loss", 2.8)]
    )
    assert store.metrics(1) == [(1, "loss", 3.0), (2, "loss", 2.8)]
    count = store._db.execute("SELECT COUNT(*) FROM metrics").fetchone()[0]
    assert count == 2


def test_record_chunk_is_all_or_nothing(store: ExperimentStore) -> None:
    add(store, 1)
    broken: list = [(1, "loss", 3.0), (2, None, 1.0)]  # the second row breaks key NOT NULL
    with pytest.raises(sqlite3.Error):
        store.record_chunk(1, chunks_done=1, global_step=2, checkpoint="c1", metrics=broken)
    run = store.run(1)
    assert (run.chunks_done, run.checkpoint) == (0, None)
    assert store.metrics(1) == []
    with pytest.raises(KeyError):
        store.record_chunk(2, chunks_done=1, global_step=2, checkpoint="c1", metrics=[(1, "loss", 3.0)])
    assert store.metrics(2) == []


def test_nan_and_infinite_metrics_survive(store: ExperimentStore) -> None:
    add(store, 1)
    store.record_chunk(
        1,
        chunks_done=1,
        global_step=2,
        checkpoint="c",
        metrics=[(1, "loss", math.inf), (2, "loss", math.nan)],
    )
    [(_, _, first), (_, _, second)] = store.metrics(1)
    assert first == math.inf
    assert math.isnan(second)


def test_metrics_after_step(store: ExperimentStore) -> None:
    add(store, 1)
    rows = [(step, "loss", 1.0 / step) for step in range(1, 11)]
    store.record_chunk(1, chunks_done=1, global_step=10, checkpoint="c", metrics=rows)
    assert store.metrics(1, after_step=7) == rows[7:]
    assert store.metrics(1, after_step=10) == []
    assert store.metrics(99) == []


def test_latest_metrics_takes_each_keys_latest_step(store: ExperimentStore) -> None:
    add(store, 1)
    add(store, 2)
    assert store.latest_metrics(1) == {}
    store.record_chunk(
        1, chunks_done=1, global_step=4, checkpoint="c", metrics=[(2, "loss", 2.0), (4, "eval_loss", 2.4)]
    )
    store.record_chunk(
        1, chunks_done=2, global_step=8, checkpoint="c", metrics=[(6, "loss", 1.5), (8, "loss", 1.2)]
    )
    store.record_chunk(2, chunks_done=1, global_step=4, checkpoint="c", metrics=[(9, "loss", 9.0)])
    assert store.latest_metrics(1) == {"eval_loss": 2.4, "loss": 1.2}


def test_mlflow_link_and_sync_point(store: ExperimentStore) -> None:
    add(store, 1)
    store.set_mlflow_run(1, "abc123")
    store.mark_mlflow_synced(1, 40)
    run = store.run(1)
    assert (run.mlflow_run_id, run.mlflow_synced_step) == ("abc123", 40)
    with pytest.raises(KeyError):
        store.mark_mlflow_synced(2, 1)


# -- events ------------------------------------------------------------------------------------


def test_events_newest_first_limited_and_per_run(store: ExperimentStore) -> None:
    add(store, 1)
    add(store, 2)
    event_id = store.add_event(None, "started", "user", "rf run configs/sweep.yaml")
    store.add_event(2, "note", "policy")
    assert isinstance(event_id, int)
    events = store.events()
    assert [(event.run_id, event.kind) for event in events] == [
        (2, "note"),
        (None, "started"),
        (2, "created"),
        (1, "created"),
    ]
    assert events[1] == EventRecord(
        id=event_id,
        time=events[1].time,
        run_id=None,
        kind="started",
        cause="user",
        detail="rf run configs/sweep.yaml",
    )
    assert [event.kind for event in store.events(limit=2)] == ["note", "started"]
    assert [event.kind for event in store.events(run_id=2)] == ["note", "created"]


# -- commands ----------------------------------------------------------------------------------


def test_commands_queue_and_finish(store: ExperimentStore) -> None:
    stop = store.add_command("stop", 1, {}, cause="user")
    clone = store.add_command(
        "clone", 2, {"overrides": ["training.learning_rate=3e-4"], "warm": True}, cause="user"
    )
    pending = store.pending_commands()
    assert [command.id for command in pending] == [stop, clone]
    assert pending[1].args == {"overrides": ["training.learning_rate=3e-4"], "warm": True}
    assert pending[1].pending

    store.finish_command(stop, outcome="applied")
    store.finish_command(clone, outcome="refused", error="run 2 does not exist")
    assert store.pending_commands() == []
    refused = store.command(clone)
    assert refused == CommandRecord(
        id=clone,
        verb="clone",
        run_id=2,
        args={"overrides": ["training.learning_rate=3e-4"], "warm": True},
        cause="user",
        created_at=refused.created_at,
        outcome="refused",
        error="run 2 does not exist",
        finished_at=refused.finished_at,
    )
    assert refused.finished_at is not None and refused.finished_at >= refused.created_at
    assert store.command(stop).outcome == "applied"


def test_finish_command_refuses_bad_outcomes_twice_finished_and_unknown_ids(store: ExperimentStore) -> None:
    command_id = store.add_command("stop", 1, {}, cause="user")
    with pytest.raises(ValueError, match="applied, refused"):
        store.finish_command(command_id, outcome="done")
    store.finish_command(command_id, outcome="applied")
    with pytest.raises(ValueError, match="already applied"):
        store.finish_command(command_id, outcome="refused")
    with pytest.raises(KeyError, match="no command 42"):
        store.finish_command(42, outcome="applied")
    with pytest.raises(KeyError, match="no command 42"):
        store.command(42)


def _add_command_from_another_process(path: str, index: int, start: Any) -> None:
    start.wait(30)
    with ExperimentStore(Path(path)) as store:
        store.add_command("stop", index, {"pid": os.getpid()}, cause=f"process {index}")


def _start_writers(path: Path, count: int) -> tuple[list[Any], Any]:
    """`count` processes, each waiting for the event to add one command to the store at `path`.

    Forked before this process opens `path` (SQLite connections must not cross a fork), so each
    writer is as independent as a separate `rf ctl` call, without 20 interpreter start-ups.
    """
    context = multiprocessing.get_context("fork")
    start = context.Event()
    processes = [
        context.Process(target=_add_command_from_another_process, args=(str(path), index, start))
        for index in range(count)
    ]
    for process in processes:
        process.start()
    return processes, start


def _join(processes: list[Any]) -> None:
    for process in processes:
        process.join(60)
        assert process.exitcode == 0


def test_twenty_processes_add_commands_at_once_and_none_is_lost(tmp_path: Path) -> None:
    path = tmp_path / STATE_DB
    ExperimentStore(path).close()
    processes, start = _start_writers(path, 20)
    with ExperimentStore(path) as controller:
        controller.add_command("resume", 99, {}, cause="user")
        start.set()  # all 20 write at once, while the controller keeps reading
        while any(process.is_alive() for process in processes):
            assert len(controller.pending_commands()) <= 21
        _join(processes)
        commands = controller.pending_commands()
    assert len(commands) == 21
    assert commands[0].verb == "resume"
    assert sorted(command.run_id for command in commands[1:]) == list(range(20))
    assert len({command.args["pid"] for command in commands[1:]}) == 20


def test_twenty_processes_can_create_the_store_at_once(tmp_path: Path) -> None:
    path = tmp_path / "fresh" / STATE_DB
    processes, start = _start_writers(path, 20)
    start.set()
    _join(processes)
    with ExperimentStore(path) as store:
        assert len(store.pending_commands()) == 20


# -- where experiments live --------------------------------------------------------------------


def make_experiment(root: Path, name: str, mtime: float) -> Path:
    folder = experiment_folder(root, name)
    ExperimentStore(folder / STATE_DB).close()
    for path in folder.iterdir():
        os.utime(path, (mtime, mtime))
    return folder


def test_experiment_folder_refuses_names_that_are_not_one_folder(tmp_path: Path) -> None:
    assert experiment_folder(tmp_path, "sweep") == tmp_path / "sweep"
    for bad in ("", "..", "a/b"):
        with pytest.raises(ConfigError, match="plain folder name"):
            experiment_folder(tmp_path, bad)


def test_find_experiment_by_name_or_latest_write(tmp_path: Path) -> None:
    old = make_experiment(tmp_path, "old-sweep", 1_000_000)
    new = make_experiment(tmp_path, "new-sweep", 2_000_000)
    (tmp_path / "not-an-experiment").mkdir()
    assert experiment_names(tmp_path) == ["new-sweep", "old-sweep"]
    assert find_experiment(None, search_dir=tmp_path) == new
    assert find_experiment("old-sweep", search_dir=tmp_path) == old
    # A write lands in the WAL file before state.db itself changes: that counts as the latest.
    with ExperimentStore(old / STATE_DB) as store:
        store.set_meta("touched", "yes")
        os.utime(old / f"{STATE_DB}-wal", (3_000_000, 3_000_000))
        assert find_experiment(None, search_dir=tmp_path) == old


def test_find_experiment_errors_say_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError) as raised:
        find_experiment(None, search_dir=tmp_path / "missing")
    message = str(raised.value)
    assert "run `rf run CONFIG` first, or pass the experiment name" in message
    assert "looked in" in message and "does not exist" in message

    make_experiment(tmp_path, "lora-sweep", 1_000_000)
    make_experiment(tmp_path, "dpo-beta", 1_000_000)
    with pytest.raises(NotFoundError) as raised:
        find_experiment("lora-swep", search_dir=tmp_path)
    message = str(raised.value)
    assert "no experiment named 'lora-swep' (did you mean 'lora-sweep'?)" in message
    assert "experiments there: dpo-beta, lora-sweep. Pass one of those" in message
    with pytest.raises(NotFoundError, match="which does not exist. Run `rf run CONFIG` first"):
        find_experiment("lora-sweep", search_dir=tmp_path / "missing")
