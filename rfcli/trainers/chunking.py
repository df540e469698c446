"""Where a run's chunks end: the training data is cut into `num_chunks` chunks of whole optimizer steps.

Chunk boundaries are steps of the run's own schedule, so a run trained chunk by chunk takes exactly
the steps (data order, learning rates) of a run trained in one go. With several epochs, every epoch
passes through all chunks; `max_steps` may end a run inside a chunk, which then is its last; a run
shorter than one epoch is cut into `num_chunks` chunks of its own length.
"""

from __future__ import annotations

import math


def steps_per_epoch(num_batches: int, gradient_accumulation_steps: int) -> int:
    """Optimizer steps in one pass over the data, as the Trainer counts them (a partial last step counts)."""
    return max(math.ceil(num_batches / gradient_accumulation_steps), 1)


def optimizer_steps(epoch_steps: int, num_train_epochs: float, max_steps: int) -> int:
    """A run's optimizer steps: `max_steps` when set (> 0), else whole epochs (a partial one counts)."""
    return max_steps if max_steps > 0 else epoch_steps * math.ceil(num_train_epochs)


def chunk_boundaries(epoch_steps: int, num_chunks: int, max_steps: int) -> list[int]:
    """The global steps at which each chunk ends, the last one being `max_steps`.

    With 10 steps per epoch and 4 chunks: 2, 5, 7, 10 (then 12, 15, 17, 20 in a second epoch);
    with max_steps 6, inside the first epoch: 1, 3, 4, 6.
    """
    boundaries = set()
    span = min(epoch_steps, max_steps)  # a run shorter than an epoch still gets its num_chunks chunks
    for start in range(0, max_steps, span):
        for chunk in range(1, num_chunks + 1):
            step = start + (span * chunk) // num_chunks
            if 0 < step < max_steps:
                boundaries.add(step)
    return sorted(boundaries) + [max_steps]
