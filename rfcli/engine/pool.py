"""The worker processes: one per GPU, or `--workers N` on the CPU, all on the same code path.

`Pool` is what the controller needs of any backend: local processes here, Ray actors in
`ray_pool`; both run `worker.Worker` and speak the messages of `messages`."""

from __future__ import annotations

import multiprocessing
import os
import queue
import signal
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.context import SpawnProcess
from pathlib import Path
from typing import Any, Protocol

from rfcli.engine.messages import ReleaseRun, Shutdown, TrainChunk, WorkerReply
from rfcli.engine.worker import parking_bytes, worker_main
from rfcli.errors import UserError

WORKER_THREADS_ENV = "RF_WORKER_THREADS"
"""Torch threads per worker; by default the CPU cores divided among the workers."""


def worker_threads(workers: int) -> int:
    """Torch threads of each of `workers` workers: the cores divided among them. RF_WORKER_THREADS
    caps it on a shared machine, where more threads than free cores spin-wait each other (measured
    5x slower per step with 2 threads under a load of 12 on 2 cores)."""
    return int(os.environ.get(WORKER_THREADS_ENV, 0)) or max(1, (os.cpu_count() or 1) // workers)


class Pool(Protocol):
    """Workers that take messages and answer them; one that dies is reported, then restarted."""

    experiment: Path

    @property
    def workers(self) -> Sequence[Any]:
        """One entry per worker, each with its `worker_id` (0, 1, ...)."""
        ...

    def describe(self) -> str:
        """The workers and where they run, for the event that starts `rf run`."""
        ...

    def send(self, worker_id: int, message: TrainChunk | ReleaseRun) -> None: ...

    def replies(self, timeout: float) -> list[WorkerReply]: ...

    def dead_workers(self) -> dict[int, str]:
        """{worker id: how it died} of the workers that died since their last restart."""
        ...

    def restart(self, worker_id: int) -> None: ...

    def shutdown(self, timeout: float = 10.0) -> None: ...


@dataclass
class WorkerHandle:
    worker_id: int
    device: str | None
    process: SpawnProcess
    inbox: Any


class WorkerPool:
    """Spawned (not forked) processes, so each builds its own torch state; replies share one queue."""

    def __init__(self, experiment: Path, devices: list[str | None]) -> None:
        self._context = multiprocessing.get_context("spawn")
        self.experiment = experiment
        self.outbox: Any = self._context.Queue()
        self.threads = worker_threads(len(devices))
        try:
            self.parking = parking_bytes(len(devices))
        except ValueError as error:
            raise UserError(str(error)) from None
        self.workers = [self._start(worker_id, device) for worker_id, device in enumerate(devices)]

    def describe(self) -> str:
        return f"{len(self.workers)} worker(s)"

    def _start(self, worker_id: int, device: str | None) -> WorkerHandle:
        inbox = self._context.Queue()
        process = self._context.Process(
            target=worker_main,
            args=(worker_id, str(self.experiment), inbox, self.outbox, self.threads, device, self.parking),
            name=f"rf-worker-{worker_id}",
            daemon=True,
        )
        # Ctrl-C reaches every process of the terminal's group; the controller stops its workers
        # itself. A process started with SIGINT ignored keeps ignoring it, from its first instruction.
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            process.start()
        finally:
            signal.signal(signal.SIGINT, previous)
        return WorkerHandle(worker_id, device, process, inbox)

    def send(self, worker_id: int, message: TrainChunk | ReleaseRun) -> None:
        self.workers[worker_id].inbox.put(message)

    def replies(self, timeout: float) -> list[WorkerReply]:
        """Every reply that arrives within `timeout` seconds (waits for the first one only)."""
        replies: list[WorkerReply] = []
        try:
            replies.append(self.outbox.get(timeout=timeout))
            while True:
                replies.append(self.outbox.get_nowait())
        except queue.Empty:
            return replies

    def dead_workers(self) -> dict[int, str]:
        return {
            handle.worker_id: f"exit code {handle.process.exitcode}"
            for handle in self.workers
            if not handle.process.is_alive()
        }

    def restart(self, worker_id: int) -> None:
        handle = self.workers[worker_id]
        self.workers[worker_id] = self._start(worker_id, handle.device)

    def shutdown(self, timeout: float = 10.0) -> None:
        for handle in self.workers:
            if handle.process.is_alive():
                handle.inbox.put(Shutdown())
        for handle in self.workers:
            handle.process.join(timeout)
            if handle.process.is_alive():
                handle.process.kill()
