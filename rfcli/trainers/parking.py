"""A parked full fine-tune waits in host memory, so K of them fit beside the run that trains.

A LoRA run's adapter is small and stays where it is. A full fine-tune is a whole model plus its
optimizer state (a 1B model with AdamW: about 12 GB), so between its turns its tensors move into
pinned host buffers, kept for the next park, and back onto the GPU when its turn comes: a copy each
way, not a reload from disk. It parks before it hands the worker back, so the next run never starts
beside it on the card. On a CPU there is nothing to move, and nothing happens.

Pinned memory cannot be paged out, so what all the runs of a worker park together is capped by a
`HostBudget` (`engine.worker.parking_bytes`: half the machine's memory, shared by its workers). A run
that does not fit is not parked: it is written to its checkpoint, freed, and resumes from that
checkpoint on its next turn. Releasing a run gives its buffers back at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from peft import PeftModel
from transformers import Trainer


@dataclass
class HostBudget:
    """The pinned host memory the parked runs of one worker hold, against its cap."""

    capacity: int
    used: int = 0

    def reserve(self, size: int) -> bool:
        if self.used + size > self.capacity:
            return False
        self.used += size
        return True

    def give_back(self, size: int) -> None:
        self.used -= size


class HostParking:
    def __init__(self, trainer: Trainer, budget: HostBudget) -> None:
        self.trainer = trainer
        self.budget = budget
        self.device: torch.device | None = None
        """Where the run's tensors live while it trains; None while they are not parked."""
        self._host: dict[tuple[int, str | None], torch.Tensor] = {}
        """Pinned host buffers, by slot: (id of a parameter, None) or (id of an optimizer state, key)."""
        self._reserved = 0
        """Bytes of the budget this run's buffers hold."""

    def _slots(self) -> list[tuple[Any, str | None]]:
        """Every tensor that moves: parameters (`.data`) and optimizer state entries."""
        model = self.trainer.model
        if model is None or isinstance(model, PeftModel):
            return []
        slots: list[tuple[Any, str | None]] = [(parameter, None) for parameter in model.parameters()]
        optimizer = getattr(self.trainer.optimizer, "optimizer", self.trainer.optimizer)
        for state in optimizer.state.values() if optimizer is not None else ():
            slots += [(state, key) for key, value in state.items() if isinstance(value, torch.Tensor)]
        return slots

    def park(self) -> bool:
        """Move the run's tensors off the GPU into pinned host memory, and wait for the copies. False,
        with nothing moved, when they do not fit in the budget (the run must then leave the GPU by its
        checkpoint). True when parked, or when nothing is on a GPU (a LoRA run, a CPU)."""
        slots = [(holder, key) for holder, key in self._slots() if read(holder, key).is_cuda]
        if not slots:
            return True
        needed = sum(tensor_bytes(read(holder, key)) for holder, key in slots)
        if needed > self._reserved and not self.budget.reserve(needed - self._reserved):
            return False
        self._reserved = max(self._reserved, needed)
        self.device = read(*slots[0]).device
        for holder, key in slots:
            tensor = read(holder, key)
            buffer = self._host.get((id(holder), key))
            if buffer is None or buffer.shape != tensor.shape or buffer.dtype != tensor.dtype:
                buffer = torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=True)
                self._host[(id(holder), key)] = buffer
            buffer.copy_(tensor)
            write(holder, key, buffer)
        torch.cuda.synchronize(self.device)
        return True

    def unpark(self) -> None:
        """Bring the run's tensors back to the GPU it trains on."""
        if self.device is None:
            return
        for holder, key in self._slots():
            tensor = read(holder, key)
            if not tensor.is_cuda and (id(holder), key) in self._host:
                write(holder, key, tensor.to(self.device, non_blocking=True))
        self.device = None

    def release(self) -> None:
        """The run is over on this worker: its pinned buffers go, and their share of the budget."""
        self._host.clear()
        self.budget.give_back(self._reserved)
        self._reserved = 0
        self.device = None

    @property
    def pinned_bytes(self) -> int:
        return sum(tensor_bytes(buffer) for buffer in self._host.values())


def tensor_bytes(tensor: torch.Tensor) -> int:
    return tensor.numel() * tensor.element_size()


def read(holder: Any, key: str | None) -> torch.Tensor:
    """A parameter's tensor (key None) or an optimizer state's entry."""
    value: torch.Tensor = holder.data if key is None else holder[key]
    return value


def write(holder: Any, key: str | None, tensor: torch.Tensor) -> None:
    if key is None:
        holder.data = tensor
    else:
        holder[key] = tensor
