"""A worker in this process, training real rf-tiny runs: each chunk is answered when it is trained, and
again once its checkpoint is durable; a full fine-tune stays parked in memory between its turns."""

from __future__ import annotations

import dataclasses
import gc
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from rfcli.engine.messages import ChunkDone, ChunkProgress, ChunkTrained, WorkerReply
from rfcli.engine.worker import Worker
from rfcli.trainers.checkpoints import STAGING_FOLDER
from rfcli.trainers.session import ChunkBoundaries
from tests.processes import REPO_ROOT, python_path_with
from tests.unit.worker_orders import order


def outcomes(sent: list[WorkerReply]) -> list[WorkerReply]:
    """What the worker said of its chunks, without the progress it reports while they train."""
    return [message for message in sent if not isinstance(message, ChunkProgress)]


def test_a_full_fine_tune_trains_its_next_chunk_from_memory_not_from_disk(tmp_path: Path) -> None:
    sent: list[WorkerReply] = []
    worker = Worker(0, tmp_path, sent.append)
    full = order(1, lora=None)
    assert worker.train_chunk(full) == ChunkTrained(0, 1, chunk_index=1)
    session = worker.sessions[1]
    session.wait_written()
    (done,) = outcomes(sent)
    assert isinstance(done, ChunkDone) and (done.chunk_index, done.global_step) == (1, 2)
    checkpoint = Path(done.checkpoint)
    assert {"model.safetensors", "optimizer.pt", "rng_state.pth", "trainer_state.json"} <= {
        path.name for path in checkpoint.iterdir()
    }
    assert not any((checkpoint.parent / STAGING_FOLDER).iterdir())  # renamed out once durable

    os.rename(checkpoint, tmp_path / "moved-away")  # the next turn must not need it
    assert worker.train_chunk(dataclasses.replace(full, checkpoint=str(checkpoint), global_step=2)) == (
        ChunkTrained(0, 1, chunk_index=2)
    )
    assert worker.sessions[1] is session  # parked and continued, not rebuilt from the checkpoint
    session.wait_written()
    last = outcomes(sent)[-1]
    assert isinstance(last, ChunkDone) and last.finished and last.global_step == 4
    worker.close()


def test_runs_on_one_model_write_their_own_adapters_while_the_next_one_trains(tmp_path: Path) -> None:
    sent: list[WorkerReply] = []
    worker = Worker(0, tmp_path, sent.append)
    for run_id, rank in ((1, 4), (2, 8)):
        worker.train_chunk(order(run_id, lora={"r": rank, "target_modules": "all-linear"}))
    worker.wait_for_writes()
    for done in outcomes(sent):
        assert isinstance(done, ChunkDone)
        (adapter,) = [path for path in Path(done.checkpoint).iterdir() if path.is_dir()]
        assert adapter.name == f"run_{done.run_id}"
        config = (adapter / "adapter_config.json").read_text()
        assert f'"r": {4 if done.run_id == 1 else 8}' in config
    worker.close()


def test_every_run_trains_on_the_workers_own_thread_and_a_parked_run_holds_no_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each thread that runs torch ops owns an OpenMP team, and libgomp's waits sleep instead of spin
    once the teams outnumber the cores: runs taking turns must train on one thread, as a lone TRL
    process does, and a parked run must not keep a thread (or its team) alive."""
    stepped_on: list[tuple[int, int]] = []
    step_end = ChunkBoundaries.on_step_end

    def on_step_end(self: ChunkBoundaries, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        stepped_on.append((state.global_step, threading.get_ident()))
        step_end(self, args, state, control, **kwargs)

    monkeypatch.setattr(ChunkBoundaries, "on_step_end", on_step_end)
    sent: list[WorkerReply] = []
    worker = Worker(0, tmp_path, sent.append)
    threads_before = threading.active_count()
    orders = [order(1, lora={"r": 4}), order(2, lora={"r": 8}), order(3, lora=None)]
    for first in orders:
        worker.train_chunk(first)
    worker.wait_for_writes()
    assert threading.active_count() == threads_before, "three parked runs, no thread of their own"
    for first in orders:
        (done,) = [m for m in outcomes(sent) if isinstance(m, ChunkDone) and m.run_id == first.run_id]
        worker.train_chunk(dataclasses.replace(first, checkpoint=done.checkpoint, global_step=2))
    assert len(stepped_on) == 12 and {ident for _, ident in stepped_on} == {threading.get_ident()}
    worker.close()


PARENT_KILLED_UNDER_ITS_WORKER = """
import multiprocessing, os, signal, sys, time
from rfcli.engine.worker import exit_with_parent

def worker(pid_file):
    exit_with_parent()
    with open(pid_file + ".part", "w") as out:
        out.write(str(os.getpid()))
    os.rename(pid_file + ".part", pid_file)
    time.sleep(120)  # a chunk that would go on writing into the checkpoint folder

if __name__ == "__main__":
    multiprocessing.get_context("spawn").Process(target=worker, args=(sys.argv[1],)).start()
    while not os.path.exists(sys.argv[1]):
        time.sleep(0.05)
    os.kill(os.getpid(), signal.SIGKILL)  # `kill -9` of rf run
"""


def gone(pid: int) -> bool:
    """Ended, or a zombie nobody reaps (a container's first process may not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_a_worker_ends_the_moment_its_parent_is_killed(tmp_path: Path) -> None:
    script = tmp_path / "parent.py"
    script.write_text(PARENT_KILLED_UNDER_ITS_WORKER)
    pid_file = tmp_path / "worker.pid"
    env = {**os.environ, "PYTHONPATH": python_path_with(REPO_ROOT)}
    parent = subprocess.run([sys.executable, str(script), str(pid_file)], env=env, timeout=60, check=False)
    assert parent.returncode == -signal.SIGKILL
    worker = int(pid_file.read_text())
    deadline = time.monotonic() + 20
    while not gone(worker):
        if time.monotonic() > deadline:
            os.kill(worker, signal.SIGKILL)
            raise AssertionError("the worker outlived its killed parent by 20 s")
        time.sleep(0.05)


def test_a_started_worker_guards_progress_bars_without_a_named_semaphore(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker killed mid-chunk (Ctrl-C) would leave a named semaphore behind, and Python's resource
    tracker would warn of it as `rf run` exits: the bars that datasets and transformers make, hidden
    or not, must not create one."""
    import multiprocessing.synchronize

    from tqdm import tqdm

    from rfcli.engine.worker import start_worker

    monkeypatch.delattr(tqdm, "_lock", raising=False)  # as in a fresh worker process
    made: list[object] = []
    semaphore = multiprocessing.synchronize.SemLock.__init__

    def counted(self: object, *args: Any, **kwargs: Any) -> None:
        made.append(self)
        semaphore(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(multiprocessing.synchronize.SemLock, "__init__", counted)
    start_worker(0, str(tmp_path), torch.get_num_threads(), None, lambda reply: None, parking=0)
    gc.unfreeze()  # start_worker froze this test process's objects
    with tqdm(range(3), disable=True) as bar:
        list(bar)
    assert made == []
