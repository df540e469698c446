"""`ExperimentStore`: the experiment's SQLite state store, shared by the controller and `rf ctl`.

One file in WAL mode: readers never block the writer, and writers from several processes wait
for each other (up to `BUSY_TIMEOUT_S`) instead of failing. Switching a fresh file to WAL is the
one step SQLite does not wait on (it answers "database is locked" at once), so openers take turns
at it under an advisory lock on the folder. Every write is one `BEGIN IMMEDIATE`
transaction, so a process killed mid-write leaves the store as it was before that write.

A new store is built whole under another name and renamed into place, so a store file is never
half-made: an empty, foreign or truncated `state.db`, or one SQLite finds damaged on a read, is
a `DamagedFileError` that names it, never a fresh store made in its place.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from rfcli.errors import DamagedFileError
from rfcli.policy.decisions import Decision
from rfcli.store.sqlite_files import sqlite_file_problem
from rfcli.store.states import RunState, check_move, run_state

RUN_STATES = tuple(state.value for state in RunState)
COMMAND_OUTCOMES = ("applied", "refused")
SCHEMA_VERSION = 4
"""Kept in SQLite's own `PRAGMA user_version`: 2 added `decisions`, 3 `runs.fresh_optimizer_step`,
4 `proposals`."""
BUSY_TIMEOUT_S = 10.0  # a writer waits this long for another process's transaction to end
DEFERRED_KEY = "deferred_commands"  # in meta: applied commands the next controller still mirrors
CHUNK_KEY = "rf/chunk"
"""The metric row that marks a chunk's end: its value is the chunk's number, its step the last one."""

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    f"""CREATE TABLE IF NOT EXISTS runs (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN {RUN_STATES!r}),
        config TEXT NOT NULL,                          -- JSON
        fingerprint TEXT NOT NULL,
        parent_id INTEGER REFERENCES runs (id),
        warm_start INTEGER NOT NULL DEFAULT 0,         -- 0 or 1
        chunks_done INTEGER NOT NULL DEFAULT 0,
        total_chunks INTEGER,
        global_step INTEGER NOT NULL DEFAULT 0,
        max_steps INTEGER,
        checkpoint TEXT,
        error TEXT,
        worker INTEGER,
        mlflow_run_id TEXT,
        mlflow_synced_step INTEGER NOT NULL DEFAULT -1,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        fresh_optimizer_step INTEGER                   -- see RunRecord
    )""",
    # value is NULL for NaN: SQLite has no NaN and stores it as NULL.
    """CREATE TABLE IF NOT EXISTS metrics (
        run_id INTEGER NOT NULL REFERENCES runs (id),
        step INTEGER NOT NULL,
        key TEXT NOT NULL,
        value REAL,
        PRIMARY KEY (run_id, step, key)
    ) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        time REAL NOT NULL,
        run_id INTEGER REFERENCES runs (id),
        kind TEXT NOT NULL,
        cause TEXT NOT NULL,
        detail TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS events_by_run ON events (run_id, id)",
    # run_id has no foreign key: a command naming an unknown run is stored and then refused.
    f"""CREATE TABLE IF NOT EXISTS commands (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        verb TEXT NOT NULL,
        run_id INTEGER NOT NULL,
        args TEXT NOT NULL,                            -- JSON
        cause TEXT NOT NULL,
        created_at REAL NOT NULL,
        outcome TEXT CHECK (outcome IN {COMMAND_OUTCOMES!r}),  -- NULL while pending
        error TEXT,
        finished_at REAL
    )""",
    "CREATE INDEX IF NOT EXISTS pending_commands ON commands (id) WHERE outcome IS NULL",
    # One row per run and rung: a policy never takes a decision twice, even across a kill -9.
    """CREATE TABLE IF NOT EXISTS decisions (
        run_id INTEGER NOT NULL REFERENCES runs (id),
        rung INTEGER NOT NULL,
        verb TEXT NOT NULL,
        metric TEXT NOT NULL,
        value REAL,                                    -- NULL: NaN or not recorded (see value_text)
        value_text TEXT,                               -- 'nan' or NULL
        cohort INTEGER NOT NULL,
        rank INTEGER,
        cutoff REAL,
        reason TEXT NOT NULL,
        parent_id INTEGER,
        changes TEXT NOT NULL,                         -- JSON
        dry_run INTEGER NOT NULL,                      -- 0 or 1
        time REAL NOT NULL,
        PRIMARY KEY (run_id, rung)
    )""",
    # One row per proposal of a model-based search, written with the run it creates: a kill -9
    # neither loses nor repeats one. run_id is NULL for a proposal whose config was refused.
    """CREATE TABLE IF NOT EXISTS proposals (
        number INTEGER PRIMARY KEY,                    -- 1, 2, ... in the order proposed
        run_id INTEGER UNIQUE REFERENCES runs (id),
        params TEXT NOT NULL,                          -- JSON: the sampler's parameter -> value
        detail TEXT NOT NULL,                          -- how it was proposed
        trial_attrs TEXT NOT NULL,                     -- JSON: what the sampler kept on the trial
        study_attrs TEXT NOT NULL,                     -- JSON: the study's attributes after it
        error TEXT,                                    -- why its config was refused
        time REAL NOT NULL
    )""",
)
_NEW_COLUMNS = {3: (("runs", "fresh_optimizer_step", "INTEGER"),)}
"""By version: the (table, column, type) it added to a table that existed before it (tables that are
new in a version are made by `_SCHEMA`'s IF NOT EXISTS)."""
POLICY_CAUSE = "policy"
SEARCH_CAUSE = "search"


@dataclass(frozen=True)
class ProposalRecord:
    """A model-based search's proposal as recorded, with the run it created (None: refused)."""

    number: int
    run_id: int | None
    params: dict[str, Any]
    detail: str
    trial_attrs: dict[str, Any]
    study_attrs: dict[str, Any]
    error: str | None
    time: float


@dataclass(frozen=True)
class RecordedDecision:
    decision: Decision
    dry_run: bool
    """Recorded without acting on it (`policy.dry_run: true`)."""
    time: float


class RecordNotFoundError(KeyError):
    """A run or command id that the store does not hold; prints its message unquoted."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class RunRecord:
    id: int
    name: str
    state: RunState
    config: dict[str, Any]
    fingerprint: str
    parent_id: int | None
    warm_start: bool
    chunks_done: int
    total_chunks: int | None
    global_step: int
    max_steps: int | None
    checkpoint: str | None
    error: str | None
    worker: int | None
    mlflow_run_id: str | None
    mlflow_synced_step: int
    created_at: float
    updated_at: float
    fresh_optimizer_step: int | None = None
    """A retry with changes restarted the run from this step: a checkpoint saved at it or before
    resumes with a fresh optimizer and schedule, so the old learning rate does not come back."""

    @property
    def progress(self) -> float | None:
        """Fraction of chunks done, or None before the plan's totals are known."""
        if not self.total_chunks:
            return None
        return self.chunks_done / self.total_chunks


@dataclass(frozen=True)
class EventRecord:
    id: int
    time: float
    run_id: int | None
    kind: str
    cause: str
    detail: str | None


@dataclass(frozen=True)
class CommandRecord:
    id: int
    verb: str
    run_id: int
    args: dict[str, Any]
    cause: str
    created_at: float
    outcome: str | None
    """'applied' or 'refused' once the controller took it; None while pending."""
    error: str | None
    finished_at: float | None

    @property
    def pending(self) -> bool:
        return self.outcome is None

    @property
    def made_run(self) -> int | None:
        """The run an applied clone made."""
        made = self.args.get("made_run")
        return None if made is None else int(made)


@contextmanager
def _one_opener_at_a_time(folder: Path) -> Iterator[None]:
    """Hold an `flock` on the store's folder: released when the block ends or the process dies."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


DAMAGED_SQLITE = ("SQLITE_CORRUPT", "SQLITE_NOTADB")
"""SQLite's names for a file it cannot read as a database (other errors: locked, busy, full disk)."""


def damaged_store(path: Path, problem: str) -> DamagedFileError:
    """The store is missing or damaged: say so, and what a person can do about it."""
    recover = (
        f", or recover what SQLite can still read (`sqlite3 {path.name} '.recover' | sqlite3 "
        "recovered.db`, then put recovered.db in its place)"
    )
    return DamagedFileError(
        f"the state store {path} {problem}: rf will not make a new one there, which would lose the "
        f"experiment's runs. Restore it from a backup{recover if path.exists() else ''}; to start "
        f"over, remove {path.parent}",
        problem=f"{path.name} {problem}",
    )


def _create_whole(path: Path) -> None:
    """A new store with its schema, built under another name and renamed to `path` once complete,
    unless another process made one first (openers take turns here under the folder's lock)."""
    with _one_opener_at_a_time(path.parent):
        if path.exists() or path.is_symlink():
            return
        staging = path.with_name(f".{path.name}.new")
        staging.unlink(missing_ok=True)  # left by a process killed while building
        db = sqlite3.connect(staging, isolation_level=None)
        try:
            db.execute("BEGIN IMMEDIATE")
            _write_schema(db)
            db.execute("COMMIT")
        finally:
            db.close()
        os.replace(staging, path)


class ExperimentStore:
    """One experiment's state: runs, metrics, events, control commands. Safe across processes."""

    def __init__(self, path: Path, *, create: bool = True) -> None:
        """Open the store at `path`; with `create`, make it first when there is none. A store that
        must exist (`create=False`) is never made: a missing one is named as such."""
        self.path = Path(path)
        if create:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            _create_whole(self.path)
        problem = "is missing" if not self.path.exists() else sqlite_file_problem(self.path)
        if problem is not None:
            raise damaged_store(self.path, problem)
        # isolation_level=None: no implicit transactions; every write opens its own below.
        self._db = sqlite3.connect(
            self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
        )
        self._db.row_factory = sqlite3.Row
        self._lock = threading.RLock()  # one transaction at a time on this shared connection
        self._batched = False  # inside `transaction()`: writes join it instead of committing
        try:
            with self._damage_named():
                self._db.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
                self._db.execute("PRAGMA foreign_keys = ON")
                with _one_opener_at_a_time(self.path.parent):
                    self._db.execute("PRAGMA journal_mode = WAL")
                    self._create_schema()
        except BaseException:
            self._db.close()
            raise

    @contextmanager
    def _damage_named(self) -> Iterator[None]:
        """SQLite finding the file damaged (on opening it, or on a read that reaches a bad page) is
        said as such, naming the store; any other error (locked, a full disk) passes as it is."""
        try:
            yield
        except sqlite3.DatabaseError as error:
            if getattr(error, "sqlite_errorname", None) in DAMAGED_SQLITE:
                raise damaged_store(self.path, f"is damaged ({error})") from None
            raise

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> ExperimentStore:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    # -- meta ---------------------------------------------------------------------------------

    def set_meta(self, key: str, value: str) -> None:
        with self._transaction():
            self._set_meta_value(key, value)

    def get_meta(self, key: str) -> str | None:
        row = self._read_one("SELECT value FROM meta WHERE key = ?", (key,))
        return None if row is None else str(row["value"])

    # -- runs ---------------------------------------------------------------------------------

    def add_run(
        self,
        run_id: int,
        config: dict[str, Any],
        fingerprint: str,
        *,
        name: str,
        parent_id: int | None = None,
        warm_start: bool = False,
        cause: str,
        detail: str | None = None,
    ) -> None:
        """A new pending run, and its 'created' event (its detail: `detail`, or the clone's parent)."""
        config_json = json.dumps(config)
        now = time.time()
        with self._transaction() as db:
            if self._has_run(run_id):
                raise ValueError(f"run {run_id} already exists in {self.path}")
            if parent_id is not None and not self._has_run(parent_id):
                raise self._run_not_found(parent_id, role="parent run")
            db.execute(
                "INSERT INTO runs (id, name, state, config, fingerprint, parent_id, warm_start,"
                " created_at, updated_at) VALUES (?, ?, 'pending', ?, ?, ?, ?, ?, ?)",
                (run_id, name, config_json, fingerprint, parent_id, int(warm_start), now, now),
            )
            if parent_id is not None and detail is None:
                detail = f"clone of run {parent_id}" + (" from its current weights" if warm_start else "")
            self._insert_event(run_id, "created", cause, detail, now)

    def next_run_id(self) -> int:
        row = self._read_one("SELECT COALESCE(MAX(id), 0) + 1 AS next FROM runs", ())
        assert row is not None
        return int(row["next"])

    def has_run(self, run_id: int) -> bool:
        with self._lock:
            return self._has_run(run_id)

    def runs(self) -> list[RunRecord]:
        return [_run_record(row) for row in self._read("SELECT * FROM runs ORDER BY id", ())]

    def run(self, run_id: int) -> RunRecord:
        row = self._read_one("SELECT * FROM runs WHERE id = ?", (run_id,))
        if row is None:
            raise self._run_not_found(run_id)
        return _run_record(row)

    def set_state(
        self,
        run_id: int,
        state: str,
        *,
        cause: str,
        detail: str | None = None,
        worker: int | None = None,
        error: str | None = None,
    ) -> None:
        """Move a run to `state` and record the event, in one transaction; IllegalMove when the
        run's state machine (`states.py`) does not allow it.

        `worker` and `error` describe the run as it is now, so each call replaces both: a run
        leaving a worker gets worker None, a failed run resumed by a person loses its error.
        The event's detail is `detail`, or the error when no detail is given.
        """
        target = run_state(state)
        now = time.time()
        with self._transaction() as db:
            row = db.execute("SELECT state FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is None:
                raise self._run_not_found(run_id)
            check_move(run_id, RunState(row["state"]), target)
            self._update_run(
                db,
                run_id,
                "state = ?, worker = ?, error = ?, updated_at = ?",
                (target.value, worker, error, now),
            )
            self._insert_event(run_id, target.value, cause, detail if detail is not None else error, now)

    def set_config(self, run_id: int, config: dict[str, Any], *, fresh_optimizer_step: int | None) -> None:
        """A run's config changed in place (a retry with overrides), to train on from
        `fresh_optimizer_step` with a fresh optimizer (see RunRecord). Its chunk and step totals may
        change with it, so they are forgotten until it trains again. Its fingerprint stays the
        plan's: it is still the plan's run, so `rf run` of the same file still attaches."""
        with self._transaction() as db:
            self._update_run(
                db,
                run_id,
                "config = ?, total_chunks = NULL, max_steps = NULL, fresh_optimizer_step = ?, updated_at = ?",
                (json.dumps(config), fresh_optimizer_step, time.time()),
            )

    def set_plan_totals(self, run_id: int, total_chunks: int, max_steps: int) -> None:
        with self._transaction() as db:
            self._update_run(
                db,
                run_id,
                "total_chunks = ?, max_steps = ?, updated_at = ?",
                (total_chunks, max_steps, time.time()),
            )

    def record_chunk(
        self,
        run_id: int,
        *,
        chunks_done: int,
        global_step: int,
        checkpoint: str,
        metrics: list[tuple[int, str, float]],
    ) -> None:
        """A finished chunk: progress, checkpoint and metric rows, all or nothing.

        Recording the same chunk again (after a crash) replaces its rows instead of doubling them.
        """
        with self._transaction() as db:
            self._update_run(
                db,
                run_id,
                "chunks_done = ?, global_step = ?, checkpoint = ?, updated_at = ?",
                (chunks_done, global_step, checkpoint, time.time()),
            )
            _insert_metrics(db, run_id, metrics)

    def add_metrics(self, run_id: int, metrics: list[tuple[int, str, float]]) -> None:
        """Metric rows outside a finished chunk: the steps a failed run took before it failed."""
        with self._transaction() as db:
            _insert_metrics(db, run_id, metrics)

    def metrics(self, run_id: int, *, after_step: int = -1) -> list[tuple[int, str, float]]:
        """(step, key, value) rows with step > after_step, by step then key."""
        rows = self._read(
            "SELECT step, key, value FROM metrics WHERE run_id = ? AND step > ? ORDER BY step, key",
            (run_id, after_step),
        )
        return [(int(row["step"]), str(row["key"]), _from_sql_float(row["value"])) for row in rows]

    def latest_metrics(self, run_id: int) -> dict[str, float]:
        """Each metric key's value at the latest step that logged it."""
        # SQLite takes the bare column `value` from the row holding MAX(step).
        rows = self._read(
            "SELECT key, value, MAX(step) FROM metrics WHERE run_id = ? GROUP BY key ORDER BY key",
            (run_id,),
        )
        return {str(row["key"]): _from_sql_float(row["value"]) for row in rows}

    def forget_steps_after(self, run_id: int, step: int) -> None:
        """A retry undoes the failed attempt's steps after `step`, its last recorded chunk: their rows
        go, and MLflow is known to match the store only up to `step` (the controller compares what it
        holds beyond, `engine/mlflow_mirror.py`)."""
        with self._transaction() as db:
            db.execute("DELETE FROM metrics WHERE run_id = ? AND step > ?", (run_id, step))
            self._update_run(db, run_id, "mlflow_synced_step = MIN(mlflow_synced_step, ?)", (step,))

    def set_mlflow_run(self, run_id: int, mlflow_run_id: str) -> None:
        with self._transaction() as db:
            self._update_run(db, run_id, "mlflow_run_id = ?", (mlflow_run_id,))

    def mark_mlflow_synced(self, run_id: int, step: int) -> None:
        """Metrics up to and including `step` are in MLflow."""
        with self._transaction() as db:
            self._update_run(db, run_id, "mlflow_synced_step = ?", (step,))

    # -- events -------------------------------------------------------------------------------

    def add_event(self, run_id: int | None, kind: str, cause: str, detail: str | None = None) -> int:
        with self._transaction():
            return self._insert_event(run_id, kind, cause, detail, time.time())

    def events(
        self, limit: int = 20, run_id: int | None = None, kind: str | None = None
    ) -> list[EventRecord]:
        """The latest `limit` events, newest first; only `run_id`'s, or only those of `kind`, when given."""
        rows = self._read(
            "SELECT * FROM events WHERE (? IS NULL OR run_id = ?) AND (? IS NULL OR kind = ?)"
            " ORDER BY id DESC LIMIT ?",
            (run_id, run_id, kind, kind, limit),
        )
        return [EventRecord(**dict(row)) for row in rows]

    # -- control commands ---------------------------------------------------------------------

    def add_command(
        self,
        verb: str,
        run_id: int,
        args: dict[str, Any],
        cause: str,
        check: Callable[[RunRecord, list[CommandRecord]], None] | None = None,
    ) -> int:
        """Queue a command for the controller; returns its id. `check` gets the run and the commands
        waiting, read in the transaction that queues the command, so no other command comes between:
        what it raises refuses the command, and nothing is queued."""
        with self._transaction():
            if check is not None:
                check(self.run(run_id), self.pending_commands())
            return self._insert_command(verb, run_id, args, cause)

    def pending_commands(self) -> list[CommandRecord]:
        """Commands not yet applied or refused, oldest first."""
        rows = self._read("SELECT * FROM commands WHERE outcome IS NULL ORDER BY id", ())
        return [_command_record(row) for row in rows]

    def answered_commands(self, limit: int) -> list[CommandRecord]:
        """The latest `limit` commands applied or refused, newest first."""
        rows = self._read(
            "SELECT * FROM commands WHERE outcome IS NOT NULL ORDER BY id DESC LIMIT ?", (limit,)
        )
        return [_command_record(row) for row in rows]

    def finish_command(
        self, command_id: int, *, outcome: str, error: str | None = None, made_run: int | None = None
    ) -> None:
        """The command's outcome; an applied clone keeps the id of the run it made (in its args), so
        whoever gave the command can name that run."""
        if outcome not in COMMAND_OUTCOMES:
            raise ValueError(f"command outcome must be one of {', '.join(COMMAND_OUTCOMES)}, not '{outcome}'")
        with self._transaction() as db:
            cursor = db.execute(
                "UPDATE commands SET outcome = ?, error = ?, finished_at = ?,"
                " args = CASE WHEN ? IS NULL THEN args ELSE json_set(args, '$.made_run', ?) END"
                " WHERE id = ? AND outcome IS NULL",
                (outcome, error, time.time(), made_run, made_run, command_id),
            )
            if cursor.rowcount == 0:
                row = db.execute("SELECT outcome FROM commands WHERE id = ?", (command_id,)).fetchone()
                if row is None:
                    raise RecordNotFoundError(f"no command {command_id} in {self.path}")
                raise ValueError(f"command {command_id} was already {row['outcome']}")

    def defer_to_controller(self, command_id: int) -> None:
        """An applied command whose effects outside the store (MLflow) wait for a controller: the
        one attached, or the next `rf run` when `rf ctl` applied it alone."""
        with self._transaction():
            deferred = self._deferred_ids()
            self._set_meta_value(DEFERRED_KEY, json.dumps([*deferred, command_id]))

    def deferred_commands(self) -> list[CommandRecord]:
        """The commands `defer_to_controller` kept, oldest first."""
        return [self.command(command_id) for command_id in self._deferred_ids()]

    def settle_deferred(self, command_ids: list[int]) -> None:
        """The next controller has carried these out."""
        with self._transaction():
            left = [command_id for command_id in self._deferred_ids() if command_id not in command_ids]
            self._set_meta_value(DEFERRED_KEY, json.dumps(left))

    def command(self, command_id: int) -> CommandRecord:
        row = self._read_one("SELECT * FROM commands WHERE id = ?", (command_id,))
        if row is None:
            raise RecordNotFoundError(f"no command {command_id} in {self.path}")
        return _command_record(row)

    # -- policy decisions ---------------------------------------------------------------------

    def record_decision(
        self, decision: Decision, *, dry_run: bool, commands: list[tuple[str, int, dict[str, Any]]]
    ) -> bool:
        """A policy's decision, its event and the commands that carry it out, all or nothing,
        before any of it takes effect. False (and nothing written) when that run and rung were
        already decided: a decision is taken once, even when `rf run` was killed around it."""
        value = decision.value
        nan = value is not None and math.isnan(value)
        now = time.time()
        with self._transaction() as db:
            cursor = db.execute(
                "INSERT OR IGNORE INTO decisions (run_id, rung, verb, metric, value, value_text, cohort,"
                " rank, cutoff, reason, parent_id, changes, dry_run, time)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    decision.run_id,
                    decision.rung,
                    decision.verb,
                    decision.metric,
                    None if nan else value,
                    "nan" if nan else None,
                    decision.cohort,
                    decision.rank,
                    decision.cutoff,
                    decision.reason,
                    decision.parent_id,
                    json.dumps(dict(decision.changes)),
                    int(dry_run),
                    now,
                ),
            )
            if cursor.rowcount == 0:
                return False
            if decision.acts:
                detail = ("dry run, not acted on: " if dry_run else "") + decision.reason
                self._insert_event(decision.run_id, "decision", POLICY_CAUSE, detail, now)
            for verb, run_id, args in commands:
                self._insert_command(verb, run_id, args, POLICY_CAUSE)
            return True

    def decisions(self, run_id: int | None = None) -> list[RecordedDecision]:
        """Recorded policy decisions, oldest first; only `run_id`'s when given."""
        where, params = ("WHERE run_id = ?", (run_id,)) if run_id is not None else ("", ())
        rows = self._read(f"SELECT * FROM decisions {where} ORDER BY time, rung, run_id", params)
        return [_recorded_decision(row) for row in rows]

    def judged_out(self) -> set[int]:
        """Runs that a policy's decision (not a dry run) took out of the schedule: stopped or replaced."""
        rows = self._read(
            "SELECT DISTINCT run_id FROM decisions WHERE verb != 'continue' AND dry_run = 0", ()
        )
        return {int(row["run_id"]) for row in rows}

    def chunk_values(self, key: str) -> dict[int, dict[int, float | None]]:
        """For every run, the metric `key` at the end of each chunk it trained itself (chunk
        number -> value; NaN when not a number, None when that chunk did not record it)."""
        rows = self._read(
            "SELECT chunk.run_id, chunk.value AS chunk, metric.key, metric.value FROM metrics AS chunk"
            " LEFT JOIN metrics AS metric"
            " ON metric.run_id = chunk.run_id AND metric.step = chunk.step AND metric.key = ?"
            " WHERE chunk.key = ?",
            (key, CHUNK_KEY),
        )
        values: dict[int, dict[int, float | None]] = {}
        for row in rows:
            value = None if row["key"] is None else _from_sql_float(row["value"])
            values.setdefault(int(row["run_id"]), {})[int(row["chunk"])] = value
        return values

    # -- search proposals ---------------------------------------------------------------------

    def record_proposal(
        self,
        proposal: ProposalRecord,
        run: tuple[dict[str, Any], str, str] | None,
    ) -> None:
        """A search's proposal and the pending run it creates (`run`: its config, fingerprint and
        name; its id is `proposal.run_id`), with the run's 'created' event (cause `search`, the
        proposal's detail), all or nothing, before it trains. A proposal whose config was refused
        has no run: its event says why. ValueError when that proposal number is already recorded."""
        with self.transaction():
            if run is not None:
                assert proposal.run_id is not None
                config, fingerprint, name = run
                self.add_run(
                    proposal.run_id,
                    config,
                    fingerprint,
                    name=name,
                    cause=SEARCH_CAUSE,
                    detail=proposal.detail,
                )
            with self._transaction() as db:
                if run is None:
                    detail = f"{proposal.detail}: {proposal.error}"
                    self._insert_event(None, "proposal refused", SEARCH_CAUSE, detail, proposal.time)
                try:
                    db.execute(
                        "INSERT INTO proposals (number, run_id, params, detail, trial_attrs, study_attrs,"
                        " error, time) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (
                            proposal.number,
                            proposal.run_id,
                            json.dumps(proposal.params),
                            proposal.detail,
                            json.dumps(proposal.trial_attrs),
                            json.dumps(proposal.study_attrs),
                            proposal.error,
                            proposal.time,
                        ),
                    )
                except sqlite3.IntegrityError:
                    known = f"proposal {proposal.number} is already recorded in {self.path}"
                    raise ValueError(known) from None

    def proposals(self) -> list[ProposalRecord]:
        """Every recorded proposal, in the order proposed."""
        rows = self._read("SELECT * FROM proposals ORDER BY number", ())
        return [_proposal_record(row) for row in rows]

    # -- internals ----------------------------------------------------------------------------

    def _insert_command(self, verb: str, run_id: int, args: dict[str, Any], cause: str) -> int:
        cursor = self._db.execute(
            "INSERT INTO commands (verb, run_id, args, cause, created_at) VALUES (?, ?, ?, ?, ?)",
            (verb, run_id, json.dumps(args), cause, time.time()),
        )
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """The writes made inside commit together or not at all: a command's effect and its
        'applied' mark, so a kill between them cannot apply the command twice.

        The write lock is taken at the first write, so reads and file copies before it do not
        hold other processes' writes up.
        """
        with self._lock, self._damage_named():
            if self._batched:
                raise RuntimeError("transactions do not nest")
            self._batched = True
            try:
                yield
                if self._db.in_transaction:
                    self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
            finally:
                self._batched = False

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction holding the database's write lock from its first statement
        (inside `transaction()`, part of that one).

        IMMEDIATE, not the default DEFERRED: a deferred transaction that reads and then writes
        can fail at once with "database is locked" instead of waiting for the busy timeout.
        """
        with self._lock, self._damage_named():
            if self._batched:
                if not self._db.in_transaction:
                    self._db.execute("BEGIN IMMEDIATE")
                yield self._db
                return
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise

    def _read(self, sql: str, params: tuple[Any, ...]) -> list[sqlite3.Row]:
        with self._lock, self._damage_named():
            return self._db.execute(sql, params).fetchall()

    def _read_one(self, sql: str, params: tuple[Any, ...]) -> sqlite3.Row | None:
        with self._lock, self._damage_named():
            row: sqlite3.Row | None = self._db.execute(sql, params).fetchone()
            return row

    def _create_schema(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version == SCHEMA_VERSION:
            return
        if version > SCHEMA_VERSION:
            raise RuntimeError(
                f"{self.path} was written by a newer rf (store schema {version}, this rf reads "
                f"{SCHEMA_VERSION}); upgrade rf to open it"
            )
        with self._transaction() as db:
            _write_schema(db, version)

    def _set_meta_value(self, key: str, value: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def _deferred_ids(self) -> list[int]:
        stored = self.get_meta(DEFERRED_KEY)
        return [int(command_id) for command_id in json.loads(stored)] if stored else []

    def _has_run(self, run_id: int) -> bool:
        return self._db.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone() is not None

    def _update_run(
        self, db: sqlite3.Connection, run_id: int, assignments: str, params: tuple[Any, ...]
    ) -> None:
        cursor = db.execute(f"UPDATE runs SET {assignments} WHERE id = ?", (*params, run_id))
        if cursor.rowcount == 0:
            raise self._run_not_found(run_id)

    def _insert_event(self, run_id: int | None, kind: str, cause: str, detail: str | None, now: float) -> int:
        cursor = self._db.execute(
            "INSERT INTO events (time, run_id, kind, cause, detail) VALUES (?, ?, ?, ?, ?)",
            (now, run_id, kind, cause, detail),
        )
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    def _run_not_found(self, run_id: int, *, role: str = "run") -> RecordNotFoundError:
        ids = [int(row[0]) for row in self._db.execute("SELECT id FROM runs ORDER BY id")]
        known = f"its runs are {_id_ranges(ids)}" if ids else "it has no runs yet"
        return RecordNotFoundError(f"no {role} {run_id} in {self.path}: {known}")


def _write_schema(db: sqlite3.Connection, version: int = SCHEMA_VERSION) -> None:
    """Every table and index, the columns later versions added to a store at `version`, and the
    schema version (inside the caller's transaction)."""
    for statement in _SCHEMA:
        db.execute(statement)
    for later in range(version + 1, SCHEMA_VERSION + 1):  # an older store's tables gain them
        for table, column, kind in _NEW_COLUMNS.get(later, ()):
            if column not in {row["name"] for row in db.execute(f"PRAGMA table_info({table})")}:
                db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def _insert_metrics(db: sqlite3.Connection, run_id: int, metrics: list[tuple[int, str, float]]) -> None:
    """A (run, step, key) written again replaces its row, so a chunk recorded twice is not doubled."""
    db.executemany(
        "INSERT OR REPLACE INTO metrics (run_id, step, key, value) VALUES (?, ?, ?, ?)",
        [(run_id, int(step), key, _to_sql_float(value)) for step, key, value in metrics],
    )


def _run_record(row: sqlite3.Row) -> RunRecord:
    fields = dict(row)
    fields["config"] = json.loads(fields["config"])
    fields["warm_start"] = bool(fields["warm_start"])
    fields["state"] = RunState(fields["state"])
    return RunRecord(**fields)


def _command_record(row: sqlite3.Row) -> CommandRecord:
    fields = dict(row)
    fields["args"] = json.loads(fields["args"])
    return CommandRecord(**fields)


def _proposal_record(row: sqlite3.Row) -> ProposalRecord:
    fields = dict(row)
    for key in ("params", "trial_attrs", "study_attrs"):
        fields[key] = json.loads(fields[key])
    return ProposalRecord(**fields)


def _recorded_decision(row: sqlite3.Row) -> RecordedDecision:
    value = math.nan if row["value_text"] == "nan" else row["value"]
    decision = Decision(
        run_id=row["run_id"],
        rung=row["rung"],
        verb=row["verb"],
        metric=row["metric"],
        value=value,
        cohort=row["cohort"],
        rank=row["rank"],
        cutoff=row["cutoff"],
        reason=row["reason"],
        parent_id=row["parent_id"],
        changes=json.loads(row["changes"]),
    )
    return RecordedDecision(decision, bool(row["dry_run"]), row["time"])


def _to_sql_float(value: float) -> float | None:
    value = float(value)
    return None if math.isnan(value) else value


def _from_sql_float(value: float | None) -> float:
    return math.nan if value is None else float(value)


def _id_ranges(ids: list[int]) -> str:
    """[1, 2, 3, 5, 7, 8] -> '1-3, 5, 7-8'."""
    spans: list[list[int]] = []
    for run_id in ids:
        if spans and run_id == spans[-1][1] + 1:
            spans[-1][1] = run_id
        else:
            spans.append([run_id, run_id])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in spans)
