"""A run's `trainer.train()` call, suspended at every chunk boundary on the worker's own thread.

The Trainer's own loop (data order, gradient accumulation, learning-rate schedule, logging) runs
once per run and is never rebuilt: between chunks the run waits inside its loop, so giving it the
next turn costs an adapter switch and an RNG restore. Each run's loop is a greenlet: a call stack of
its own that the worker's thread switches to and from explicitly, so every run trains on that one
thread. A thread per run would give each its own OpenMP team, and GNU libgomp makes every wait sleep
instead of spin once the teams' threads together outnumber the cores: steps up to 25% slower on 2
cores, by how many teams were alive, which made a chunked sweep's speed come and go. One thread
holds one team, as a lone TRL process does, under any OpenMP runtime.

At each boundary the run logs and evaluates, parks what it holds on the GPU (see `parking`), hands
the worker back and has the rest of its checkpoint written on a writer thread while the next run
trains (see `checkpoints`); the chunk is reported saved only once that checkpoint is durable, so a
crash loses at most the chunks in flight. A run's last chunk is written before its `train()` call
returns. A full fine-tune that does not fit in the worker's host memory for parked runs is written
first and handed back with `resumes_from_disk`: the worker then releases it, and its next turn
starts from that checkpoint. Evaluating includes the generation metrics of `eval.metrics`, when
the config names any.
"""

from __future__ import annotations

import math
import os
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from greenlet import greenlet
from transformers import Trainer, TrainerCallback, TrainerControl, TrainerState, TrainingArguments
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from rfcli.trainers.checkpoints import BackgroundCheckpoints
from rfcli.trainers.chunking import chunk_boundaries, steps_per_epoch
from rfcli.trainers.generation_eval import GenerationMetrics
from rfcli.trainers.memory import forget_trainer
from rfcli.trainers.parking import HostBudget, HostParking
from rfcli.trainers.rng import RngState, capture_rng, restore_rng

MetricRow = tuple[int, str, float]
FINAL_SUMMARY_KEY = "train_runtime"
"""Only the Trainer's end-of-`train()` summary has this key; its figures cover one call, not the run."""


@dataclass
class ChunkOutcome:
    chunk_index: int
    """1-based position of the chunk just finished among `total_chunks`."""
    total_chunks: int
    global_step: int
    max_steps: int
    checkpoint: str
    metrics: list[MetricRow] = field(default_factory=list)
    finished: bool = False
    save_seconds: float = 0.0
    """From the end of evaluation to the handoff: the part of the checkpoint the worker waits for."""
    trained_at: float = 0.0
    """`time.perf_counter()` at the handoff: the worker was free from then on."""
    write_seconds: float = 0.0
    """Writing the rest of the checkpoint durably, while the worker trains the next run."""
    park_seconds: float = 0.0
    """Moving the run off the GPU into pinned host memory at this boundary (a full fine-tune)."""
    unpark_seconds: float = 0.0
    """Moving it back onto the GPU when this chunk's turn began."""
    resumes_from_disk: bool = False
    """The run could not park in host memory: it was handed back once written, and its `train()` ends;
    the worker releases it, and its next turn resumes from this checkpoint."""


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or infinite: the run cannot recover and is marked failed."""


class ChunkBoundaries(TrainerCallback):
    """Turns the Trainer's loop into chunks: log, evaluate and save at each boundary, then park."""

    def __init__(
        self,
        session: RunSession,
        num_chunks: int,
        evaluate: bool,
        generation: GenerationMetrics | None = None,
    ) -> None:
        self.session = session
        self.num_chunks = num_chunks
        self.evaluate = evaluate
        self.generation = generation
        self.boundaries: list[int] = []
        self.rng_before_eval: RngState | None = None
        self.save_started = 0.0

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        epoch_steps = steps_per_epoch(len(kwargs["train_dataloader"]), args.gradient_accumulation_steps)
        self.boundaries = chunk_boundaries(epoch_steps, self.num_chunks, state.max_steps)
        fast_forward_schedule(kwargs.get("lr_scheduler"), state.global_step)

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if state.global_step in self.boundaries:
            control.should_log = True
            control.should_evaluate = self.evaluate
            control.should_save = True
            self.rng_before_eval = capture_rng()
            self.save_started = time.perf_counter()

    def on_evaluate(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        """Evaluation draws from the generators; undo that, so evaluating at chunk boundaries leaves
        the training identical to a run that never stopped."""
        if self.generation is not None:
            self.session.collect(state.global_step, self.generation.score(kwargs["model"]))
        if self.rng_before_eval is not None:
            restore_rng(self.rng_before_eval)
            self.rng_before_eval = None
        self.save_started = time.perf_counter()

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if not logs or FINAL_SUMMARY_KEY in logs:
            return
        self.session.collect(state.global_step, logs)
        loss = logs.get("loss")
        if isinstance(loss, float) and not math.isfinite(loss):
            raise NonFiniteLossError(f"loss is {loss} at step {state.global_step}")

    def outcome(self, args: TrainingArguments, state: TrainerState) -> ChunkOutcome:
        checkpoint = os.path.join(str(args.output_dir), f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}")
        return ChunkOutcome(
            chunk_index=self.boundaries.index(state.global_step) + 1,
            total_chunks=len(self.boundaries),
            global_step=state.global_step,
            max_steps=state.max_steps,
            checkpoint=checkpoint,
            finished=state.global_step >= state.max_steps,
            save_seconds=time.perf_counter() - self.save_started,
        )

    def on_save(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self.session.chunk_saved(control)


def fast_forward_schedule(scheduler: Any, global_step: int) -> None:
    """A warm start brings weights and a step but no scheduler state: move the run's own fresh
    schedule to the step it starts from, so warmup and decay stay where the step says."""
    behind = global_step - getattr(scheduler, "last_epoch", global_step)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # stepping a schedule before its optimizer is intended here
        for _ in range(behind):
            scheduler.step()


class RunSession:
    """One run's trainer, trained a chunk at a time by `train_chunk()` on the worker's thread.

    `saved` is called with each chunk once its checkpoint is durable (on the writer thread, or on
    the worker's for the last chunk), or with the error that stopped the run after the chunk was
    handed back."""

    def __init__(
        self,
        trainer: Trainer,
        num_chunks: int,
        activate: Callable[[], None],
        saved: Callable[[ChunkOutcome | BaseException], None],
        budget: HostBudget,
        resume_from: str | None = None,
        generation: GenerationMetrics | None = None,
    ) -> None:
        self.trainer = trainer
        self.activate = activate
        self.saved = saved
        self.resume_from = resume_from
        evaluate = trainer.eval_dataset is not None
        self.boundaries = ChunkBoundaries(self, num_chunks, evaluate, generation)
        trainer.add_callback(self.boundaries)
        if isinstance(trainer, BackgroundCheckpoints):
            trainer.handoff = self.chunk_trained
        self.parking = HostParking(trainer, budget)
        self.global_step: int | None = None
        """The step the run is parked at (None before its first chunk and after it ended)."""
        self._loop: greenlet | None = None
        """The run's `train()` call, suspended at its last boundary; None before its first turn."""
        self._metrics: list[MetricRow] = []
        self._writer: threading.Thread | None = None
        """Writing the checkpoint of the chunk last handed back, while the worker trains another run."""
        self._write_error: BaseException | None = None
        self._rng: RngState = capture_rng()
        """The generators as the Trainer seeded them, restored when the run's first turn begins."""
        self._leaving = False
        self._finished: ChunkOutcome | None = None
        """The last chunk, trained and written: handed back once `train()` returns."""
        self._unpark_seconds = 0.0

    def train_chunk(self) -> ChunkOutcome:
        """Give the run its next turn; return when its chunk is trained and evaluated, while its
        checkpoint is still being written. Raises the run's own error."""
        if self._loop is None:
            self._loop = greenlet(self._train)
        elif self._loop.dead:
            raise RuntimeError("the run's training has ended")
        outcome = self._loop.switch()
        if isinstance(outcome, BaseException) or outcome is None:
            self.global_step = None
            raise outcome or RuntimeError("training ended before its last chunk")
        self.global_step = None if outcome.finished else outcome.global_step
        return outcome

    def wait_written(self) -> None:
        """Block until no checkpoint of this run is being written (before the shared model changes)."""
        if self._writer is not None:
            self._writer.join()

    def close(self) -> None:
        """End a parked run's `train()` call without training further (its checkpoint stays on disk),
        and let go of everything it held: trainer, optimizer state, parked host buffers. The worker
        collects and empties its caches after."""
        if self._loop:  # started and not ended: suspended at a boundary
            self._leaving = True
            self._loop.switch()
        self.wait_written()
        self._loop = None
        self.global_step = None
        self.parking.release()
        forget_trainer(self.trainer)

    def chunk_ends(self) -> list[int]:
        """The global steps at which the run's chunks end; empty until its training has begun."""
        return self.boundaries.boundaries

    def take_metrics(self) -> list[MetricRow]:
        """The rows logged since the last chunk boundary (what a failed chunk got to)."""
        rows, self._metrics = self._metrics, []
        return rows

    # Called inside the run's `train()` call, from the Trainer's loop.

    def collect(self, step: int, logs: dict[str, Any]) -> None:
        for key, value in logs.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                self._metrics.append((step, key, float(value)))

    def chunk_trained(self, write: Callable[[], None]) -> None:
        """The chunk is trained and evaluated: once the run is parked (off the GPU), its checkpoint
        is written on a writer thread while the worker trains the next run, and the run waits here
        for its next turn. A run that cannot park is written first and handed back for good; a run's
        last chunk is written here, and handed back once its `train()` call returns."""
        outcome = self.boundaries.outcome(self.trainer.args, self.trainer.state)
        outcome.metrics, self._metrics = self._metrics, []
        self._rng = capture_rng()
        if outcome.finished:
            write()
            self._finished = outcome
            return
        parking_started = time.perf_counter()
        if not self.parking.park():
            write()
            outcome.resumes_from_disk = True
            outcome.trained_at = time.perf_counter()
            self._leaving = True
            self.saved(outcome)
            self._hand_back(outcome)
            return
        if self.parking.device is not None:  # it moved: a full fine-tune on a GPU
            outcome.park_seconds = time.perf_counter() - parking_started
        outcome.unpark_seconds, self._unpark_seconds = self._unpark_seconds, 0.0
        outcome.trained_at = time.perf_counter()
        self._write_error = None
        self._writer = threading.Thread(
            target=self._write_in_background, args=(write, outcome), name="rf-checkpoint", daemon=True
        )
        self._writer.start()
        self._hand_back(outcome)
        self.wait_written()  # the run's next turn, or its end: its checkpoint is complete by now
        if self._write_error is not None and not self._leaving:
            raise self._write_error  # already reported: this chunk never counted

    def chunk_saved(self, control: TrainerControl) -> None:
        """After the checkpoint: end the run's `train()` when it is leaving, else take the turn."""
        if self._leaving:
            control.should_training_stop = True
            return
        if self._finished is not None:
            return  # the last chunk: train() returns next
        if self.parking.device is not None:
            unparking_started = time.perf_counter()
            self.parking.unpark()
            self._unpark_seconds = time.perf_counter() - unparking_started
        self.activate()
        restore_rng(self._rng)

    def _hand_back(self, outcome: ChunkOutcome) -> None:
        """Suspend the run's `train()` call here, giving the worker this chunk's outcome; returns at
        the run's next turn (or when it is closed)."""
        assert self._loop is not None
        parent = self._loop.parent
        assert parent is not None
        parent.switch(outcome)

    def _write_in_background(self, write: Callable[[], None], outcome: ChunkOutcome) -> None:
        try:
            write()
        except BaseException as error:  # noqa: BLE001 - the worker reports any failure of the run
            self._write_error = error
            self.saved(error)  # the worker has moved on: the chunk's outcome says it
            return
        outcome.write_seconds = time.perf_counter() - outcome.trained_at
        self.saved(outcome)

    def _train(self) -> ChunkOutcome | BaseException | None:
        """The run's greenlet: its whole `train()` call. Returns the last chunk's outcome once it is
        durable, the error that ended the run, or None when it was closed."""
        try:
            self.activate()
            restore_rng(self._rng)
            self.trainer.train(resume_from_checkpoint=self.resume_from)
        except BaseException as error:  # noqa: BLE001 - the worker reports any failure of the run
            return error
        finished = self._finished
        if finished is None:
            return None if self._leaving else RuntimeError("training ended before its last chunk")
        finished.save_seconds = time.perf_counter() - self.boundaries.save_started
        finished.trained_at = time.perf_counter()
        self.saved(finished)
        return finished
