"""Where a run's chunks end: the training data is cut into `num_chunks` chunks of whole optimizer steps.

Chunk boundaries are steps of the run's own schedule, so a run trained chunk by chunk takes exactly
the steps (data order, learning rates) of a run trained in one go. With several epochs, every epoch
passes through all chunks; `max_steps` may end a run inside a chunk, which then is its last.
"""

from __future__ import annotations

import math


def steps_per_epoch(num_batches: int, gradient_accumulation_steps: int) -> int:
    """Optimizer steps in one pass over the data, as the Trainer counts them (a partial last step counts)."""
    return max(math.ceil(num_batches / gradient_accumulation_steps), 1)


def chunk_boundaries(epoch_steps: int, num_chunks: int, max_steps: int) -> list[int]:
    """The global steps at which each chunk ends, the last one being `max_steps`.

    With 10 steps per epoch and 4 chunks: 2, 5, 7, 10 (then 12, 15, 17, 20 in a second epoch).
    """
    boundaries = set()
    epochs = math.ceil(max_steps / epoch_steps)
    for epoch in range(epochs):
        for chunk in range(1, num_chunks + 1):
            step = epoch * epoch_steps + (epoch_steps * chunk) // num_chunks
            if 0 < step < max_steps:
                boundaries.add(step)
    return sorted(boundaries) + [max_steps]
