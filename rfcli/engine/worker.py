"""A worker process: holds base models and parked runs, and trains one chunk at a time on its device."""

from __future__ import annotations

import gc
import logging
import multiprocessing
import multiprocessing.connection
import os
import threading
import time
import traceback
import warnings
from collections.abc import Callable
from functools import partial
from multiprocessing.queues import Queue
from pathlib import Path
from typing import TYPE_CHECKING

from rfcli.engine.faults import machine_fault
from rfcli.engine.messages import (
    ChunkDone,
    ChunkFailed,
    ChunkProgress,
    ChunkTrained,
    MetricRow,
    ReleaseRun,
    Shutdown,
    TrainChunk,
    WorkerNotice,
    WorkerReply,
)
from rfcli.gpus import VISIBLE_DEVICES
from rfcli.store.checksums import resume_point
from rfcli.store.layout import ExperimentLayout

if TYPE_CHECKING:
    from datasets import Dataset
    from transformers import Trainer

    from rfcli.config.schema import ExperimentConfig
    from rfcli.trainers.host import ModelHost
    from rfcli.trainers.session import ChunkOutcome, RunSession


PARKING_ENV = "RF_PARKING_GIB"
"""Pinned host memory each worker may park full fine-tunes in, in GiB."""
HOST_SHARE = 0.5
"""Of a machine's memory, what the workers on it may pin for parked runs, all together."""


def parking_bytes(workers_here: int) -> int:
    """Each worker's budget for parked runs: RF_PARKING_GIB, or its share of half the machine's memory.
    A ValueError names a setting that is not a number of GiB (the controller checks it before it
    starts a worker)."""
    override = os.environ.get(PARKING_ENV, "").strip()
    if override:
        try:
            gib = float(override)
        except ValueError:
            gib = -1.0
        if not gib >= 0:
            raise ValueError(
                f"{PARKING_ENV}={override!r}: expected the GiB of host memory a worker may park runs in"
            )
        return int(gib * 2**30)
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return int(total * HOST_SHARE / max(1, workers_here))


def worker_main(
    worker_id: int,
    experiment: str,
    inbox: Queue,
    outbox: Queue,
    threads: int,
    device: str | None,
    parking: int,
) -> None:
    """Process entry point: serve the controller's messages until told to shut down."""
    exit_with_parent()
    worker = start_worker(worker_id, experiment, threads, device, send=outbox.put, parking=parking)
    while not isinstance(message := inbox.get(), Shutdown):
        reply = worker.handle(message)
        if reply is not None:
            outbox.put(reply)
    worker.close()


def start_worker(
    worker_id: int,
    experiment: str,
    threads: int,
    device: str | None,
    send: Callable[[WorkerReply], None],
    parking: int,
) -> Worker:
    """The worker of a local process or of a Ray actor, on its device with `threads` torch threads and
    `parking` bytes of host memory for parked runs; what it says between answers (a durable
    checkpoint, progress inside a chunk) goes to `send`."""
    if device is not None:
        os.environ[VISIBLE_DEVICES] = device  # this worker's one GPU, before torch sees any
    # Before the first cuBLAS handle: `training.full_determinism` needs a fixed workspace, and a run
    # that asks for it may come after one that did not (a few MB of workspace otherwise).
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    quiet_libraries()
    thread_lock_for_progress_bars()
    import torch

    torch.set_num_threads(threads)
    worker = Worker(worker_id, Path(experiment), send, parking=parking)
    # The trainer stack (seconds of imports) loads now, while the controller compiles the plan and
    # opens MLflow, instead of at the first chunk.
    import rfcli.trainers.build  # noqa: F401
    import rfcli.trainers.session  # noqa: F401

    # What the imports made lives as long as the process: frozen, it is left out of every garbage
    # collection, and each run's `Trainer.train()` starts with a full one (0.23 s each, before).
    gc.freeze()
    return worker


def exit_with_parent() -> None:
    """A `kill -9` of `rf run` must not leave a worker finishing its chunk into the checkpoint folder
    that the next `rf run` resumes from: the worker ends the moment its parent is gone."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        multiprocessing.connection.wait([parent.sentinel])
        os._exit(1)

    threading.Thread(target=watch, name="rf-parent-watch", daemon=True).start()


def quiet_libraries() -> None:
    """Library chatter would tear through the live table; errors still reach the run's record."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()


def thread_lock_for_progress_bars() -> None:
    """tqdm guards its bars (made even when hidden, by datasets and transformers) with a
    multiprocessing lock: a named semaphore that a worker stopped mid-chunk (Ctrl-C kills it) leaves
    behind, for Python's resource tracker to warn about when `rf run` exits. A worker's bars are
    written by its own threads only, so a thread lock guards them as well."""
    from tqdm import tqdm

    tqdm.set_lock(threading.RLock())


class Worker:
    """Trains one chunk at a time. A chunk is answered twice: `ChunkTrained` when the worker is free
    again, then `ChunkDone` through `send` once its checkpoint is durable (from the thread that wrote
    it; a run's last chunk is written first, so its `ChunkDone` comes first). While a chunk trains,
    `send` also gets its progress (`ChunkProgress`) about once a second."""

    def __init__(
        self,
        worker_id: int,
        experiment: Path,
        send: Callable[[WorkerReply], None],
        parking: int | None = None,
    ) -> None:
        from rfcli.trainers.host import ModelHost
        from rfcli.trainers.parking import HostBudget

        self.worker_id = worker_id
        self.layout = ExperimentLayout(experiment)
        self.send = send
        self._started: dict[int, tuple[float, float]] = {}
        """By run: when its chunk in flight started, and how long its setup took."""
        self.host: ModelHost = ModelHost()
        self.sessions: dict[int, RunSession] = {}
        self._data: dict[str, tuple[Dataset, Dataset | None]] = {}
        self.parking = HostBudget(parking_bytes(1) if parking is None else parking)
        """Pinned host memory the parked full fine-tunes of this worker share."""
        self._told_parking_full = False

    def handle(self, message: TrainChunk | ReleaseRun) -> WorkerReply | None:
        """One message from the controller; a chunk to train is answered, a release is not."""
        if isinstance(message, ReleaseRun):
            self.release(message.run_id)
            return None
        return self.train_chunk(message)

    def train_chunk(self, order: TrainChunk) -> WorkerReply:
        started = time.perf_counter()
        try:
            session = self.sessions.get(order.run_id)
            if session is None or session.global_step != order.global_step:
                self.release(order.run_id)
                session = self._start_session(order)
            self._started[order.run_id] = (started, time.perf_counter() - started)
            outcome = session.train_chunk()
            if outcome.resumes_from_disk:
                self.release(order.run_id)  # off the GPU before the next run starts
                self.say_parking_is_full(order.run_id)
        except BaseException as error:  # noqa: BLE001 - one run failing must leave the others training
            failed = self.sessions.get(order.run_id)
            metrics = failed.take_metrics() if failed is not None else []
            self.release(order.run_id)
            return self.failed(order.run_id, error, metrics)
        return ChunkTrained(self.worker_id, order.run_id, outcome.chunk_index)

    def say_parking_is_full(self, run_id: int) -> None:
        if self._told_parking_full:
            return
        self._told_parking_full = True
        used, capacity = (f"{size / 2**30:.1f}" for size in (self.parking.used, self.parking.capacity))
        text = (
            f"worker {self.worker_id}: its host memory for parked runs is full ({used} of {capacity} GiB; "
            f"{PARKING_ENV} sets it): full fine-tunes beyond it leave the GPU through their checkpoints "
            "and resume from them, slower than from memory"
        )
        self.send(WorkerNotice(self.worker_id, run_id, text))

    def failed(
        self, run_id: int, error: BaseException, metrics: list[MetricRow] | None = None
    ) -> ChunkFailed:
        """The run's error, or the machine's (a full disk): then the run did not fail, and trains again."""
        fault = machine_fault(error, self.layout.folder)
        return ChunkFailed(self.worker_id, run_id, describe_error(error), metrics or [], fault)

    def report_saved(self, run_id: int, result: ChunkOutcome | BaseException) -> None:
        """On the thread that wrote the chunk's checkpoint: it is durable (or writing it failed)."""
        if isinstance(result, BaseException):
            self.send(self.failed(run_id, result))
            return
        started, setup_seconds = self._started[run_id]
        self.send(
            ChunkDone(
                worker=self.worker_id,
                run_id=run_id,
                chunk_index=result.chunk_index,
                total_chunks=result.total_chunks,
                global_step=result.global_step,
                max_steps=result.max_steps,
                checkpoint=result.checkpoint,
                finished=result.finished,
                seconds=result.trained_at - started,
                setup_seconds=setup_seconds,
                save_seconds=result.save_seconds,
                write_seconds=result.write_seconds,
                park_seconds=result.park_seconds,
                unpark_seconds=result.unpark_seconds,
                metrics=result.metrics,
            )
        )

    def _start_session(self, order: TrainChunk) -> RunSession:
        from rfcli.config.plan import to_typed_config
        from rfcli.trainers.build import build_trainer
        from rfcli.trainers.generation_eval import generation_metrics
        from rfcli.trainers.session import RunSession

        config = to_typed_config(order.config)
        resume = resume_point(order.checkpoint, order.fresh_optimizer_step)  # checked before it is read
        if resume.passed_over:
            fallback = f"run {order.run_id}: {resume.fallback_line()}"
            self.send(WorkerNotice(self.worker_id, order.run_id, fallback))
        self.wait_for_writes()  # a new run changes the shared model those writes read from
        train, evaluation = self._datasets(config)
        model, activate = self.host.model_for_run(order.run_id, config)
        trainer = build_trainer(
            config,
            model,
            self.host.tokenizer(config.model),
            train,
            evaluation,
            str(self.layout.checkpoints(order.run_id)),
            reference_folder=self.layout.reference_logps,
        )
        trainer.fresh_optimizer = resume.fresh_optimizer  # type: ignore[attr-defined]
        generation = generation_metrics(config, self.host.tokenizer(config.model), evaluation)
        saved = partial(self.report_saved, order.run_id)
        session = RunSession(
            trainer,
            config.num_chunks,
            activate,
            saved,
            self.parking,
            resume_from=resume.checkpoint,
            generation=generation,
        )
        self.sessions[order.run_id] = session
        self._report_progress(trainer, session, order.run_id)
        return session

    def _report_progress(self, trainer: Trainer, session: RunSession, run_id: int) -> None:
        from rfcli.trainers.progress import StepProgress

        send, worker_id = self.send, self.worker_id
        trainer.add_callback(
            StepProgress(session.chunk_ends, lambda **where: send(ChunkProgress(worker_id, run_id, **where)))
        )

    def _datasets(self, config: ExperimentConfig) -> tuple[Dataset, Dataset | None]:
        """Rows are loaded once per worker and data config; each run's trainer tokenizes them once."""
        from rfcli.data.sources import data_key, load_run_data

        key = data_key(config)
        if key not in self._data:
            self._data[key] = load_run_data(config)
        return self._data[key]

    def wait_for_writes(self) -> None:
        for session in self.sessions.values():
            session.wait_written()

    def release(self, run_id: int) -> None:
        """Forget a run (its thread ends once its checkpoint is written) and free what it held: its
        trainer and optimizer state, parked copies, its adapter; then the device's caches."""
        from rfcli.trainers.memory import give_back_memory

        session = self.sessions.pop(run_id, None)
        if session is None and not self.host.holds(run_id):
            return
        if session is not None:
            session.close()
            del session  # collected below, with what it held
        self.wait_for_writes()  # deleting an adapter changes the shared model those writes read from
        self.host.release(run_id)
        give_back_memory()

    def close(self) -> None:
        for run_id in list(self.sessions):
            self.release(run_id)


def describe_error(error: BaseException) -> str:
    """The error and where it came from, short enough for a table cell and an MLflow tag."""
    frames = traceback.extract_tb(error.__traceback__)
    where = f" (at {Path(frames[-1].filename).name}:{frames[-1].lineno})" if frames else ""
    return f"{type(error).__name__}: {error}{where}"
