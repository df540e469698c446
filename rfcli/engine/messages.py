"""What the controller and its worker processes say to each other (picklable, no torch inside)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

MetricRow = tuple[int, str, float]


@dataclass(frozen=True)
class TrainChunk:
    """Train the run's next chunk, continuing in memory if the worker holds it parked at
    `global_step`, else resuming from `checkpoint` (None: from the start)."""

    run_id: int
    config: dict[str, Any]
    checkpoint: str | None
    global_step: int
    fresh_optimizer_step: int | None = None
    """A checkpoint saved at this step or before resumes with a fresh optimizer (a retry changed the
    run's config there)."""


@dataclass(frozen=True)
class ReleaseRun:
    """Forget the run (stopped, deleted, or trained elsewhere next): its state is on disk."""

    run_id: int


@dataclass(frozen=True)
class Shutdown:
    pass


@dataclass(frozen=True)
class ChunkTrained:
    """The run's chunk is trained and evaluated and the worker is free; its checkpoint is still being
    written, so the chunk is not done yet (`ChunkDone` follows)."""

    worker: int
    run_id: int
    chunk_index: int


@dataclass(frozen=True)
class ChunkDone:
    """The run's chunk is trained and its checkpoint is durable on disk."""

    worker: int
    run_id: int
    chunk_index: int
    total_chunks: int
    global_step: int
    max_steps: int
    checkpoint: str
    finished: bool
    seconds: float
    setup_seconds: float
    """Time spent building the run's trainer (first chunk on this worker), ~0 when it was parked here."""
    save_seconds: float
    """The part of the checkpoint the worker waited for (its RNG state), from the end of evaluation."""
    write_seconds: float
    """Writing the rest of the checkpoint durably, while the worker trained the next run."""
    metrics: list[MetricRow] = field(default_factory=list)
    park_seconds: float = 0.0
    """A full fine-tune on a GPU: moving it into pinned host memory at the boundary, before the hand-off."""
    unpark_seconds: float = 0.0
    """... and back onto the GPU when this chunk's turn began."""


@dataclass(frozen=True)
class ChunkFailed:
    worker: int
    run_id: int
    error: str
    metrics: list[MetricRow] = field(default_factory=list)
    """The steps the run took in this chunk before it failed (the loss that went NaN, say)."""
    fault: str | None = None
    """Set when the machine failed, not the run (`faults.machine_fault`: a full disk, say): the run
    trains the chunk again once the experiment continues."""


@dataclass(frozen=True)
class ChunkProgress:
    """Where a run stands inside the chunk it trains, sent about once a second while it trains
    (kept in the controller's memory for the live table; the store records finished chunks only)."""

    worker: int
    run_id: int
    step: int
    chunk_start_step: int
    chunk_end_step: int
    chunk_index: int
    """1-based position of the chunk in flight among `total_chunks`."""
    total_chunks: int
    max_steps: int
    steps_per_second: float
    """Over the chunk so far; 0.0 before its first step."""


@dataclass(frozen=True)
class WorkerNotice:
    """Something a person should know about how a worker trains a run (its host memory for parked runs
    is full, once per worker; a damaged checkpoint passed over): it goes into the store as an event
    and onto the live table."""

    worker: int
    run_id: int
    text: str


WorkerReply = ChunkTrained | ChunkDone | ChunkFailed | ChunkProgress | WorkerNotice
"""What a worker sends back: a chunk trained (its checkpoint still being written), its outcome,
progress while the chunk trains, or a notice."""
