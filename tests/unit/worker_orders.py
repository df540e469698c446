"""The chunk orders the worker tests send: a 4-step rf-tiny run in 2 chunks, LoRA or full."""

from __future__ import annotations

from typing import Any

from rfcli.engine.messages import TrainChunk


def order(
    run_id: int, lora: dict[str, Any] | None, checkpoint: str | None = None, global_step: int = 0
) -> TrainChunk:
    config = {
        "name": "worker",
        "model": {"name": "rf-tiny"},
        "data": {"train": {"source": "recipes.qa_data:chatterbot_qa", "select": 32}},
        "lora": lora,
        "training": {"max_steps": 4, "per_device_train_batch_size": 8, "max_length": 32},
        "num_chunks": 2,
        "seed": 0,
    }
    return TrainChunk(run_id, config, checkpoint=checkpoint, global_step=global_step)
