"""A damaged newest checkpoint, on a worker in this process training a real rf-tiny LoRA run: the run
resumes from the checkpoint before it, says so, and trains exactly the steps of the run that was never
damaged; with no intact checkpoint left, the run fails naming each damaged file."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pytest
from safetensors.torch import load_file, save_file

from rfcli.engine.messages import (
    ChunkDone,
    ChunkFailed,
    ChunkTrained,
    TrainChunk,
    WorkerNotice,
    WorkerReply,
)
from rfcli.engine.worker import Worker
from tests.unit.test_checksums import truncate, zero_second_half

ADAPTER = "run_1/adapter_model.safetensors"
CONFIG = {
    "name": "damaged",
    "model": {"name": "rf-tiny"},
    "data": {"train": {"source": "recipes.qa_data:chatterbot_qa", "select": 48}},
    "lora": {"r": 4, "lora_dropout": 0.1, "target_modules": "all-linear"},
    "training": {"num_train_epochs": 1, "per_device_train_batch_size": 8, "max_length": 32},
    "num_chunks": 3,  # 6 steps: chunks end at steps 2, 4 and 6
    "seed": 0,
}
Losses = dict[int, float]


def train(worker: Worker, checkpoint: str | None, step: int, sent: list[WorkerReply]) -> WorkerReply:
    reply = worker.train_chunk(TrainChunk(1, CONFIG, checkpoint, step))
    worker.wait_for_writes()
    return reply


def done(sent: list[WorkerReply]) -> list[ChunkDone]:
    return [message for message in sent if isinstance(message, ChunkDone)]


def losses(chunks: list[ChunkDone]) -> Losses:
    return {step: value for chunk in chunks for step, key, value in chunk.metrics if key == "loss"}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Losses]:
    """The run's three chunks trained on one worker: its experiment folder, its loss at each step."""
    folder = tmp_path_factory.mktemp("uninterrupted")
    sent: list[WorkerReply] = []
    worker = Worker(0, folder, sent.append)
    checkpoint, step = None, 0
    for _ in range(3):
        train(worker, checkpoint, step, sent)
        checkpoint, step = done(sent)[-1].checkpoint, done(sent)[-1].global_step
    worker.close()
    assert step == 6 and sorted(losses(done(sent))) == [1, 2, 3, 4, 5, 6]
    return folder, losses(done(sent))


def huge_values(path: Path) -> None:
    """A valid file of the same size, every weight 1e30 times what was written: only its checksum
    tells (trained on, the loss turned NaN, blamed on the learning rate)."""
    save_file({key: value * 1e30 for key, value in load_file(path).items()}, path, metadata={"format": "pt"})


def copy_of_the_first_two_chunks(reference: Path, tmp_path: Path) -> tuple[Path, Path]:
    """An experiment folder whose run 1 has chunk 2 recorded (at step 4), with the chunk before kept:
    (the folder, the run's checkpoints folder)."""
    folder = tmp_path / "experiment"
    checkpoints = folder / "runs" / "1" / "checkpoints"
    for step in (2, 4):
        name = f"checkpoint-{step}"
        shutil.copytree(reference / "runs" / "1" / "checkpoints" / name, checkpoints / name)
    return folder, checkpoints


def test_a_damaged_newest_checkpoint_falls_back_to_the_one_before_and_trains_the_same_steps(
    uninterrupted: tuple[Path, Losses], tmp_path: Path
) -> None:
    """Every kind of damage is told apart in tests/unit/test_checksums.py; here, the one that only a
    checksum can tell, end to end."""
    reference, expected = uninterrupted
    folder, checkpoints = copy_of_the_first_two_chunks(reference, tmp_path)
    huge_values(checkpoints / "checkpoint-4" / ADAPTER)

    sent: list[WorkerReply] = []
    worker = Worker(0, folder, sent.append)
    assert train(worker, str(checkpoints / "checkpoint-4"), 4, sent) == ChunkTrained(0, 1, chunk_index=2)
    (fallback,) = [message for message in sent if isinstance(message, WorkerNotice)]
    assert fallback.text.startswith(f"run 1: {checkpoints / 'checkpoint-4' / ADAPTER} differs from")
    assert fallback.text.endswith("; resumes from checkpoint-2 (step 2)")
    train(worker, done(sent)[-1].checkpoint, 4, sent)
    worker.close()
    assert [chunk.global_step for chunk in done(sent)] == [4, 6]
    retrained = losses(done(sent))
    assert sorted(retrained) == [3, 4, 5, 6]
    for step, value in retrained.items():
        assert math.isclose(value, expected[step], rel_tol=1e-6), (step, value, expected[step])


def test_with_no_intact_checkpoint_the_run_fails_naming_each_damaged_file(
    uninterrupted: tuple[Path, Losses], tmp_path: Path
) -> None:
    folder, checkpoints = copy_of_the_first_two_chunks(uninterrupted[0], tmp_path)
    truncate(checkpoints / "checkpoint-4" / ADAPTER)
    zero_second_half(checkpoints / "checkpoint-2" / "optimizer.pt")
    sent: list[WorkerReply] = []
    worker = Worker(0, folder, sent.append)
    failed = train(worker, str(checkpoints / "checkpoint-4"), 4, sent)
    worker.close()
    assert isinstance(failed, ChunkFailed)
    assert failed.error.startswith(
        f"DamagedCheckpoint: {checkpoints / 'checkpoint-4' / ADAPTER} is 40 bytes where"
    )
    assert f"{checkpoints / 'checkpoint-2' / 'optimizer.pt'} differs from what was written" in failed.error
    assert "no intact checkpoint is left" in failed.error
