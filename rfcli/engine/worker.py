"""A worker process: holds base models and parked runs, and trains one chunk at a time on its device."""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.connection
import os
import threading
import time
import traceback
import warnings
from collections.abc import Callable
from multiprocessing.queues import Queue
from pathlib import Path
from typing import TYPE_CHECKING

from rfcli.engine.messages import (
    ChunkDone,
    ChunkFailed,
    ChunkProgress,
    ReleaseRun,
    Shutdown,
    TrainChunk,
    WorkerReply,
)
from rfcli.store.layout import ExperimentLayout

if TYPE_CHECKING:
    from datasets import Dataset
    from transformers import Trainer

    from rfcli.config.schema import ExperimentConfig
    from rfcli.trainers.host import ModelHost
    from rfcli.trainers.session import RunSession


def worker_main(
    worker_id: int, experiment: str, inbox: Queue, outbox: Queue, threads: int, device: str | None
) -> None:
    """Process entry point: serve the controller's messages until told to shut down."""
    exit_with_parent()
    worker = start_worker(worker_id, experiment, threads, device, report=outbox.put)
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
    report: Callable[[ChunkProgress], None] | None = None,
) -> Worker:
    """The worker of a local process or of a Ray actor, on its device with `threads` torch threads;
    progress inside a chunk goes to `report` (a local process: the controller's queue)."""
    if device is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = device
    quiet_libraries()
    import torch

    torch.set_num_threads(threads)
    return Worker(worker_id, Path(experiment), report=report)


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


class Worker:
    def __init__(
        self, worker_id: int, experiment: Path, report: Callable[[ChunkProgress], None] | None = None
    ) -> None:
        from rfcli.trainers.host import ModelHost

        self.worker_id = worker_id
        self.layout = ExperimentLayout(experiment)
        self.report = report
        """Where progress inside a chunk goes (the controller's queue); None: nowhere."""
        self.host: ModelHost = ModelHost()
        self.sessions: dict[int, RunSession] = {}
        self._data: dict[str, tuple[Dataset, Dataset | None]] = {}

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
            setup_seconds = time.perf_counter() - started
            outcome = session.train_chunk()
        except BaseException as error:  # noqa: BLE001 - one run failing must leave the others training
            failed = self.sessions.get(order.run_id)
            metrics = failed.take_metrics() if failed is not None else []
            self.release(order.run_id)
            return ChunkFailed(self.worker_id, order.run_id, describe_error(error), metrics)
        if outcome.finished or order.config.get("lora") is None:
            # A full fine-tune is a whole model: parked, K of them would hold K models in memory.
            # Its checkpoint is on disk, so its next chunk resumes from there instead.
            self.release(order.run_id)
        return ChunkDone(
            worker=self.worker_id,
            run_id=order.run_id,
            chunk_index=outcome.chunk_index,
            total_chunks=outcome.total_chunks,
            global_step=outcome.global_step,
            max_steps=outcome.max_steps,
            checkpoint=outcome.checkpoint,
            finished=outcome.finished,
            seconds=time.perf_counter() - started,
            setup_seconds=setup_seconds,
            save_seconds=outcome.save_seconds,
            metrics=outcome.metrics,
        )

    def _start_session(self, order: TrainChunk) -> RunSession:
        from rfcli.config.plan import to_typed_config
        from rfcli.trainers.build import build_trainer
        from rfcli.trainers.generation_eval import generation_metrics
        from rfcli.trainers.session import RunSession

        config = to_typed_config(order.config)
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
        generation = generation_metrics(config, self.host.tokenizer(config.model), evaluation)
        session = RunSession(
            trainer, config.num_chunks, activate, resume_from=order.checkpoint, generation=generation
        )
        self.sessions[order.run_id] = session
        self._report_progress(trainer, session, order.run_id)
        return session

    def _report_progress(self, trainer: Trainer, session: RunSession, run_id: int) -> None:
        from rfcli.trainers.progress import StepProgress

        report = self.report
        if report is not None:
            worker_id = self.worker_id
            trainer.add_callback(
                StepProgress(
                    session.chunk_ends, lambda **where: report(ChunkProgress(worker_id, run_id, **where))
                )
            )

    def _datasets(self, config: ExperimentConfig) -> tuple[Dataset, Dataset | None]:
        """Rows are loaded once per worker and data config; each run's trainer tokenizes them once."""
        from rfcli.data.sources import data_key, load_run_data

        key = data_key(config)
        if key not in self._data:
            self._data[key] = load_run_data(config)
        return self._data[key]

    def release(self, run_id: int) -> None:
        session = self.sessions.pop(run_id, None)
        if session is not None:
            session.close()
        self.host.release(run_id)

    def close(self) -> None:
        for run_id in list(self.sessions):
            self.release(run_id)


def describe_error(error: BaseException) -> str:
    """The error and where it came from, short enough for a table cell and an MLflow tag."""
    frames = traceback.extract_tb(error.__traceback__)
    where = f" (at {Path(frames[-1].filename).name}:{frames[-1].lineno})" if frames else ""
    return f"{type(error).__name__}: {error}{where}"
