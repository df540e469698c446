"""The CUDA path, on the GPU itself: parking a full fine-tune in pinned host memory and back, the CUDA
random generators across turns, device memory after a release, an out-of-memory run failing alone,
chunked against unchunked training, and one GPU per worker."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from rfcli.engine.messages import ChunkDone, ChunkFailed, ChunkTrained, TrainChunk, WorkerReply
from rfcli.engine.worker import Worker
from rfcli.trainers.rng import capture_rng, restore_rng

pytestmark = pytest.mark.gpu

REPO_ROOT = Path(__file__).resolve().parents[2]
LOSS_TOLERANCE = 1e-3
"""Relative: how far per-step losses of 4 chunks and 1 chunk may drift on a GPU without
`full_determinism` (non-deterministic kernels, not chunking, make runs differ in the last bits)."""


def order(
    run_id: int,
    lora: dict[str, Any] | None,
    *,
    model: str = "rf-tiny",
    num_chunks: int = 2,
    max_steps: int = 4,
    checkpoint: str | None = None,
    step: int = 0,
    **training: Any,
) -> TrainChunk:
    config = {
        "name": "cuda",
        "model": {"name": model},
        "data": {"train": {"source": "recipes.qa_data:chatterbot_qa", "select": 256}},
        "lora": lora,
        "training": {"max_steps": max_steps, "per_device_train_batch_size": 8, "max_length": 64, **training},
        "num_chunks": num_chunks,
        "seed": 0,
    }
    return TrainChunk(run_id, config, checkpoint=checkpoint, global_step=step)


def train_to_the_end(worker: Worker, first: TrainChunk, sent: list[WorkerReply]) -> list[tuple[int, float]]:
    """Every chunk of one run on `worker`; its per-step losses."""
    chunk = first
    while True:
        reply = worker.train_chunk(chunk)
        assert isinstance(reply, ChunkTrained), reply
        worker.wait_for_writes()
        last = [m for m in sent if isinstance(m, ChunkDone) and m.run_id == first.run_id][-1]
        if last.finished:
            break
        chunk = TrainChunk(first.run_id, first.config, last.checkpoint, last.global_step)
    return [
        (step, value)
        for m in sent
        if isinstance(m, ChunkDone) and m.run_id == first.run_id
        for step, key, value in m.metrics
        if key == "loss"
    ]


def host_bytes() -> int:
    return int(torch.cuda.host_memory_stats().get("allocated_bytes.current", 0))


def test_a_parked_full_fine_tune_comes_back_bit_for_bit_and_gives_its_pinned_memory_back(
    tmp_path: Path,
) -> None:
    pinned_before = host_bytes()
    worker = Worker(0, tmp_path, lambda message: None)
    worker.train_chunk(order(1, lora=None))
    session = worker.sessions[1]
    session.wait_written()
    model: Any = session.trainer.model
    optimizer: Any = session.trainer.optimizer
    parameters = list(model.parameters())
    assert all(
        p.device.type == "cpu" and p.data.is_pinned() for p in parameters
    )  # parked before the hand-back
    weights = [p.detach().clone() for p in parameters]
    states = [{k: v.clone() for k, v in s.items() if torch.is_tensor(v)} for s in optimizer.state.values()]
    assert states and session.parking.pinned_bytes > 0

    session.parking.unpark()
    assert all(p.is_cuda for p in parameters)
    assert all(torch.equal(p.detach().cpu(), w) for p, w in zip(parameters, weights, strict=True))
    for state, saved in zip(optimizer.state.values(), states, strict=True):
        assert all(torch.equal(state[k].cpu(), v) for k, v in saved.items())
    assert session.parking.park()

    parking = session.parking
    del session, model, optimizer, parameters
    worker.release(1)
    assert parking.pinned_bytes == 0 and worker.parking.used == 0
    assert host_bytes() <= pinned_before
    worker.close()


def test_the_cuda_generators_are_the_runs_own_across_turns() -> None:
    state = capture_rng()
    first = torch.rand(4, device="cuda")
    torch.rand(1000, device="cuda")  # another run's turn draws meanwhile
    restore_rng(state)
    assert torch.equal(torch.rand(4, device="cuda"), first)


def test_device_memory_returns_to_its_level_after_a_release(tmp_path: Path) -> None:
    worker = Worker(0, tmp_path, lambda message: None)
    worker.train_chunk(order(1, lora={"r": 8, "target_modules": "all-linear"}, model="rf-small"))
    worker.wait_for_writes()
    worker.release(1)
    level = torch.cuda.memory_allocated()
    for run_id in range(2, 6):
        worker.train_chunk(order(run_id, lora=None, model="rf-small"))
        worker.wait_for_writes()
        worker.release(run_id)
    assert torch.cuda.memory_allocated() <= level + 64 * 2**20  # the caches hold less than 64 MB more
    worker.close()


def test_an_out_of_memory_run_fails_alone_and_the_next_one_trains_on_the_same_worker(tmp_path: Path) -> None:
    """rf-small fully fine-tuned with AdamW needs about 0.5 GB (weights, gradients, two moments); the
    card is cut to 300 MB, where rf-tiny's LoRA run fits easily."""
    total = torch.cuda.get_device_properties(0).total_memory
    torch.cuda.set_per_process_memory_fraction(300 * 2**20 / total)
    try:
        worker = Worker(0, tmp_path, lambda message: None)
        huge = order(1, lora=None, model="rf-small")
        failed = worker.train_chunk(huge)
        assert isinstance(failed, ChunkFailed) and "OutOfMemoryError" in failed.error
        assert 1 not in worker.sessions
        assert isinstance(
            worker.train_chunk(order(2, lora={"r": 8, "target_modules": "all-linear"})), ChunkTrained
        )
        worker.close()
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)


@pytest.mark.parametrize("deterministic", [True, False], ids=["full_determinism", "default"])
def test_chunked_training_equals_unchunked_on_the_gpu(tmp_path: Path, deterministic: bool) -> None:
    """With `training.full_determinism` bit for bit, as on a CPU; without it within LOSS_TOLERANCE."""
    lora = {"r": 8, "lora_dropout": 0.1, "target_modules": "all-linear"}
    losses = []
    for run_id, chunks in ((1, 4), (2, 1)):
        sent: list[WorkerReply] = []
        worker = Worker(0, tmp_path / str(chunks), sent.append)
        first = order(run_id, lora, num_chunks=chunks, max_steps=16, full_determinism=deterministic)
        losses.append(train_to_the_end(worker, first, sent))
        worker.close()
    chunked, whole = losses
    assert [step for step, _ in chunked] == [step for step, _ in whole] == list(range(1, 17))
    if deterministic:
        assert chunked == whole
    else:
        assert all(
            abs(a - b) <= LOSS_TOLERANCE * abs(b) for (_, a), (_, b) in zip(chunked, whole, strict=True)
        )


def count_gpus(queue: Any) -> None:
    """In a spawned worker-to-be: what a worker sees once its one GPU is set."""
    from rfcli.engine.worker import start_worker

    start_worker(0, "/tmp", 1, os.environ["RF_TEST_DEVICE"], send=lambda message: None, parking=0)
    queue.put((torch.cuda.device_count(), str(torch.cuda.get_device_properties(0).uuid)))


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")
def test_two_workers_hold_one_gpu_each() -> None:
    from rfcli.gpus import machine_gpus, worker_devices

    gpus = machine_gpus()
    devices = worker_devices(2)
    assert devices == [gpu.visible_as for gpu in gpus[:2]]
    context = multiprocessing.get_context("spawn")
    seen = []
    for device in devices:
        assert device is not None
        queue = context.Queue()
        os.environ["RF_TEST_DEVICE"] = device
        process = context.Process(target=count_gpus, args=(queue,))
        process.start()
        seen.append(queue.get(timeout=300))
        process.join()
    assert [count for count, _ in seen] == [1, 1]
    assert seen[0][1] != seen[1][1]  # two different cards


def test_compiling_a_plan_takes_no_cuda_context() -> None:
    """In a fresh process on this GPU machine: `rf plan` of the quickstart leaves no CUDA context behind."""
    code = (
        "import torch; from pathlib import Path; from rfcli.config.plan import compile_plan; "
        "compile_plan(Path('configs/quickstart.yaml'), []); print(torch.cuda.is_initialized())"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip().splitlines()[-1] == "False"
