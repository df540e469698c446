"""What a released run held goes back at once: its trainer, optimizer state and (a full fine-tune) its
model, on the device and in pinned host memory.

A trainer, its callbacks and the run's session refer to each other, so dropping the session frees
nothing until some later garbage collection, and a sweep of many runs creeps up to an out-of-memory
error. `forget_trainer` breaks every such cycle through the trainer; `give_back_memory` then
collects and empties the CUDA caches, so the next run starts on a card as empty as the first.
"""

from __future__ import annotations

import gc

import torch
from transformers import Trainer


def forget_trainer(trainer: Trainer) -> None:
    """Drop everything the trainer refers to (after its `train()` call has ended: nothing may use it
    again). The accelerator lets go of the model, optimizer, scheduler and data loaders it prepared."""
    accelerator = getattr(trainer, "accelerator", None)
    if accelerator is not None:
        for prepared in ("_models", "_optimizers", "_schedulers", "_dataloaders"):
            getattr(accelerator, prepared, []).clear()
    vars(trainer).clear()


def give_back_memory() -> None:
    """Collect what was freed and return the caching allocators' unused blocks to the device and the
    host (pinned buffers)."""
    gc.collect()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()
        empty_host_cache = getattr(getattr(torch, "accelerator", None), "empty_host_cache", None)
        if empty_host_cache is not None:
            empty_host_cache()
