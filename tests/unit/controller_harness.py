"""The controller's loop without torch: workers that train a chunk at once, and an MLflow in memory.

`InstantPool` answers each chunk it is given at the next `replies()` with a checkpoint folder and two
rows per step, `loss = 1 / step` and `learning_rate = step / 1000`: what any test expects a run to
have logged is known without training. `MemoryTracker` keeps every metric row MLflow would hold,
duplicates included.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from rfcli.engine.controller import Controller
from rfcli.engine.messages import ChunkDone, ChunkTrained, ReleaseRun, TrainChunk, WorkerReply
from rfcli.store.database import ExperimentStore
from rfcli.store.layout import ExperimentLayout

CHUNKS = 4
STEPS_PER_CHUNK = 4
MAX_STEPS = CHUNKS * STEPS_PER_CHUNK
CONFIG: dict[str, Any] = {
    "name": "instant",
    "trainer": "sft",
    "model": {"name": "rf-tiny"},
    "data": {"train": {"source": "recipes.qa_data:chatterbot_qa"}},
    "training": {"learning_rate": 1e-3},
    "num_chunks": CHUNKS,
}


def loss_at(step: int) -> float:
    return 1.0 / step


def chunk_rows(first_step: int, last_step: int) -> list[tuple[int, str, float]]:
    return [
        row
        for step in range(first_step, last_step + 1)
        for row in ((step, "learning_rate", step / 1000), (step, "loss", loss_at(step)))
    ]


def chunk_done(run_id: int, chunk: int, checkpoint: Path, worker: int = 0) -> ChunkDone:
    step = chunk * STEPS_PER_CHUNK
    return ChunkDone(
        worker=worker,
        run_id=run_id,
        chunk_index=chunk,
        total_chunks=CHUNKS,
        global_step=step,
        max_steps=MAX_STEPS,
        checkpoint=str(checkpoint),
        finished=step >= MAX_STEPS,
        seconds=1.0,
        setup_seconds=0.0,
        save_seconds=0.0,
        write_seconds=0.0,
        metrics=chunk_rows(step - STEPS_PER_CHUNK + 1, step),
    )


class InstantPool:
    """Workers that train the chunk they are given at once; `trained` lists (run id, chunk)."""

    def __init__(self, experiment: Path, workers: int = 1) -> None:
        self.experiment = experiment
        self.layout = ExperimentLayout(experiment)
        self.workers = [SimpleNamespace(worker_id=worker) for worker in range(workers)]
        self.trained: list[tuple[int, int]] = []
        self.released: list[int] = []
        self.answer: Callable[[int, TrainChunk], list[WorkerReply]] = self.train
        """What a worker answers a chunk with; a test replaces it to make a chunk fail."""
        self._outbox: list[WorkerReply] = []

    def describe(self) -> str:
        return f"{len(self.workers)} instant worker(s)"

    def send(self, worker_id: int, message: TrainChunk | ReleaseRun) -> None:
        if isinstance(message, ReleaseRun):
            self.released.append(message.run_id)
            return
        self._outbox.extend(self.answer(worker_id, message))

    def train(self, worker_id: int, order: TrainChunk) -> list[WorkerReply]:
        chunk = order.global_step // STEPS_PER_CHUNK + 1
        checkpoint = self.layout.checkpoints(order.run_id) / f"checkpoint-{chunk * STEPS_PER_CHUNK}"
        checkpoint.mkdir(parents=True, exist_ok=True)
        self.trained.append((order.run_id, chunk))
        return [
            ChunkTrained(worker_id, order.run_id, chunk),
            chunk_done(order.run_id, chunk, checkpoint, worker_id),
        ]

    def replies(self, timeout: float) -> list[WorkerReply]:
        replies, self._outbox = self._outbox, []
        return replies

    def dead_workers(self) -> dict[int, str]:
        return {}

    def restart(self, worker_id: int) -> None:
        pass

    def shutdown(self, timeout: float = 10.0) -> None:
        pass


@dataclass
class MemoryRun:
    name: str
    params: dict[str, Any]
    tags: dict[str, str]
    rows: list[tuple[int, str, float]] = field(default_factory=list)
    status: str = "RUNNING"
    deleted: bool = False


class MemoryTracker:
    """What `MlflowTracker` does, kept in memory: each run's params, tags, status and metric rows."""

    def __init__(self) -> None:
        self.runs: dict[str, MemoryRun] = {}
        self._ids = itertools.count(1)

    def start_run(self, run_name: str, params: dict[str, Any], tags: dict[str, str]) -> str:
        run_id = f"mlflow-{next(self._ids)}"
        self.runs[run_id] = MemoryRun(run_name, dict(params), dict(tags))
        return run_id

    def log_metrics(self, mlflow_run_id: str, rows: list[tuple[int, str, float]]) -> None:
        self.runs[mlflow_run_id].rows.extend((int(step), key, float(value)) for step, key, value in rows)

    def set_tags(self, mlflow_run_id: str, tags: dict[str, str]) -> None:
        self.runs[mlflow_run_id].tags.update(tags)

    def end_run(self, mlflow_run_id: str, status: str) -> None:
        self.runs[mlflow_run_id].status = status

    def metric_history(self, mlflow_run_id: str, key: str) -> list[tuple[int, float]]:
        return sorted((step, value) for step, name, value in self.runs[mlflow_run_id].rows if name == key)

    def logged_rows(self, mlflow_run_id: str, keys: list[str] | None = None) -> list[tuple[int, str, float]]:
        rows = self.runs[mlflow_run_id].rows
        return sorted((row for row in rows if keys is None or row[1] in keys), key=lambda row: row[:2])

    def tags(self, mlflow_run_id: str) -> dict[str, str]:
        return dict(self.runs[mlflow_run_id].tags)

    def delete_tag(self, mlflow_run_id: str, key: str) -> None:
        self.runs[mlflow_run_id].tags.pop(key, None)

    def rename_run(self, mlflow_run_id: str, name: str) -> None:
        self.runs[mlflow_run_id].name = name

    def status(self, mlflow_run_id: str) -> str:
        return self.runs[mlflow_run_id].status

    def reopen(self, mlflow_run_id: str) -> None:
        self.runs[mlflow_run_id].status = "RUNNING"

    def runs_tagged(self, key: str, value: str) -> list[tuple[str, dict[str, str]]]:
        return [
            (run_id, dict(run.tags))
            for run_id, run in self.runs.items()
            if run.tags.get(key) == value and not run.deleted
        ]

    def delete_run(self, mlflow_run_id: str) -> None:
        self.runs[mlflow_run_id].deleted = True

    def shown(self, rf_run_id: int) -> list[MemoryRun]:
        """The MLflow runs a person sees for one rf run: not deleted, tagged with its id."""
        return [
            run
            for run in self.runs.values()
            if not run.deleted and run.tags.get("rf.run_id") == str(rf_run_id)
        ]


def make_store(folder: Path, run_ids: tuple[int, ...] = (1, 2)) -> ExperimentStore:
    store = ExperimentStore(ExperimentLayout(folder).state_db)
    for run_id in run_ids:
        store.add_run(run_id, CONFIG, f"fp{run_id}", name=str(run_id), cause="plan")
    return store


def make_controller(store: ExperimentStore, pool: InstantPool, tracker: Any = None) -> Controller:
    """A controller on `pool`, mirroring to `tracker` (by default a new `MemoryTracker`)."""
    tracker = MemoryTracker() if tracker is None else tracker
    return Controller(store, tracker=tracker, pool=pool, announce=lambda line: None)  # type: ignore[arg-type]


def run_to_the_end(controller: Controller, turns: int = 200) -> None:
    """`Controller.run`, failing the test if the loop is still turning after `turns` turns."""
    count = itertools.count()

    def refresh() -> None:
        if next(count) >= turns:
            raise AssertionError(f"rf run's loop still turns after {turns} turns with nothing to train")

    controller.run(refresh)
