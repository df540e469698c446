"""A parked full fine-tune waits in host memory, so K of them fit beside the run that trains.

A LoRA run's adapter is small and stays where it is. A full fine-tune is a whole model plus its
optimizer state (a 1B model with AdamW: about 12 GB), so between its turns its tensors move into
pinned host buffers, kept for the next park, and back onto the GPU when its turn comes: a copy each
way, not a reload from disk. On a CPU there is nothing to move, and nothing happens.
"""

from __future__ import annotations

from typing import Any

import torch
from peft import PeftModel
from transformers import Trainer


class HostParking:
    def __init__(self, trainer: Trainer) -> None:
        self.trainer = trainer
        self.device: torch.device | None = None
        """Where the run's tensors live while it trains; None while they are not parked."""
        self._host: dict[tuple[int, str | None], torch.Tensor] = {}
        """Pinned host buffers, by slot: (id of a parameter, None) or (id of an optimizer state, key)."""

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

    def park(self) -> None:
        """Move the run's tensors off the GPU into pinned host memory (no-op off the GPU)."""
        slots = [(holder, key) for holder, key in self._slots() if read(holder, key).is_cuda]
        if not slots:
            return
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

    def unpark(self) -> None:
        """Bring the run's tensors back to the GPU it trains on."""
        if self.device is None:
            return
        for holder, key in self._slots():
            tensor = read(holder, key)
            if not tensor.is_cuda and (id(holder), key) in self._host:
                write(holder, key, tensor.to(self.device, non_blocking=True))
        self.device = None


def read(holder: Any, key: str | None) -> torch.Tensor:
    """A parameter's tensor (key None) or an optimizer state's entry."""
    value: torch.Tensor = holder.data if key is None else holder[key]
    return value


def write(holder: Any, key: str | None, tensor: torch.Tensor) -> None:
    if key is None:
        holder.data = tensor
    else:
        holder[key] = tensor
