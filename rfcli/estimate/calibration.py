"""A few real steps of the plan's first runs on this machine, timed through the worker's own code.

In a scratch experiment folder, one worker (the one `rf run` would start, with its torch threads)
trains the plan's first run for 2 chunks of `steps` steps each, then its second run (when the plan
has one) for 1 chunk: the first chunk holds the first run's set-up (model, data, trainer), the
second the steady pace and a whole chunk boundary (evaluation on the run's eval set, generation
metrics, the checkpoint's handoff), the second run a later run's set-up on the same worker. Nothing
is written outside the scratch folder, which goes at the end.
"""

from __future__ import annotations

import copy
import math
import queue
import tempfile
from dataclasses import dataclass
from typing import Any

from rfcli.config.plan import RunPlan
from rfcli.engine.messages import ChunkDone, ChunkFailed, TrainChunk, WorkerReply
from rfcli.errors import UserError
from rfcli.estimate.timing import Calibration

CALIBRATION_STEPS = 3
"""Steps per timed chunk: enough to see past a first step's warm-up, few enough to take seconds."""
REPLY_TIMEOUT_S = 600.0


class CalibrationFailed(UserError):
    """A calibration run failed, as it would in `rf run`: the run's error, said in one line."""

    def __init__(self, run_id: int, error: str) -> None:
        super().__init__(f"calibrating on run {run_id} failed, as the run would in rf run: {error}")


@dataclass(frozen=True)
class TimedChunk:
    seconds: float
    setup_seconds: float
    boundary_seconds: float
    steps: int


def calibrate(run_plan: RunPlan, tokens_per_step: float, threads: int, startup_seconds: float) -> Calibration:
    """Time the plan's first runs (see the module doc); `tokens_per_step` is the first run's."""
    from rfcli.engine.worker import parking_bytes, start_worker

    replies: queue.Queue[WorkerReply] = queue.Queue()
    with tempfile.TemporaryDirectory(prefix="rf-calibrate-") as scratch:
        worker = start_worker(0, scratch, threads, None, send=replies.put, parking=parking_bytes(1))
        try:
            first, second = run_plan.runs[0], run_plan.runs[1] if len(run_plan.runs) > 1 else None
            first_config = shortened(first.raw, 2 * CALIBRATION_STEPS, 2)
            opening = train(worker, replies, TrainChunk(first.id, first_config, None, 0))
            steady = train(worker, replies, TrainChunk(first.id, first_config, None, opening.steps))
            later_setup = opening.setup_seconds
            if second is not None:
                later = TrainChunk(second.id, shortened(second.raw, CALIBRATION_STEPS, 1), None, 0)
                later_setup = train(worker, replies, later).setup_seconds
        finally:
            worker.close()
    timed_steps = steady.steps - opening.steps
    return Calibration(
        steps=timed_steps,
        step_seconds=(steady.seconds - steady.setup_seconds - steady.boundary_seconds) / timed_steps,
        tokens_per_step=tokens_per_step,
        boundary_seconds=steady.boundary_seconds,
        first_setup_seconds=opening.setup_seconds,
        later_setup_seconds=later_setup,
        startup_seconds=startup_seconds,
    )


def shortened(raw: dict[str, Any], steps: int, chunks: int) -> dict[str, Any]:
    """The run's config, cut to `steps` optimizer steps in `chunks` chunks."""
    config = copy.deepcopy(raw)
    config.setdefault("training", {})["max_steps"] = steps
    config["num_chunks"] = chunks
    return config


def train(worker: Any, replies: queue.Queue[WorkerReply], order: TrainChunk) -> TimedChunk:
    """One chunk, as the controller has a worker train it; its `ChunkDone` once its checkpoint is
    durable, with the step it reached (as `steps`)."""
    answer = worker.handle(order)
    if isinstance(answer, ChunkFailed):
        raise CalibrationFailed(order.run_id, answer.error)
    while True:
        reply = replies.get(timeout=REPLY_TIMEOUT_S)
        if isinstance(reply, ChunkFailed):
            raise CalibrationFailed(order.run_id, reply.error)
        if isinstance(reply, ChunkDone) and reply.run_id == order.run_id:
            return TimedChunk(reply.seconds, reply.setup_seconds, boundary_seconds(reply), reply.global_step)


def boundary_seconds(done: ChunkDone) -> float:
    """A chunk boundary's cost: evaluation, generation metrics, the checkpoint's handoff."""
    at_end = {key: value for step, key, value in done.metrics if step == done.global_step}
    parts = (at_end.get("eval_runtime", 0.0), at_end.get("rf/generation_seconds", 0.0), done.save_seconds)
    return sum(part for part in parts if math.isfinite(part))
