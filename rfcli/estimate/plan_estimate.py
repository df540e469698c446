"""`rf plan --estimate [--calibrate]`: every run's workload and memory, the most a worker holds, and
with calibration the runs' and the sweep's wall time, with and without the policy's expected stops."""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rfcli.estimate.memory import RunMemory, run_memory, worker_bytes
from rfcli.estimate.timing import Calibration, RunCost, run_seconds, stopping_policy, sweep_seconds
from rfcli.estimate.workload import Workload, row_lengths, run_workload

if TYPE_CHECKING:
    from datasets import Dataset
    from transformers import PreTrainedTokenizerBase

    from rfcli.config.plan import PlannedRun, RunPlan


@dataclass(frozen=True)
class RunEstimate:
    run: PlannedRun
    workload: Workload
    memory: RunMemory
    seconds: float | None
    """With calibration: the run's own time, set-up included."""

    @property
    def cost(self) -> RunCost:
        return RunCost(self.run.id, self.workload.steps, self.workload.chunks, self.workload.tokens_per_step)


@dataclass(frozen=True)
class PlanEstimate:
    runs: list[RunEstimate]
    workers: int
    worker_bytes: int
    calibration: Calibration | None = None
    sweep_seconds: float | None = None
    """Every run trained to its end, on `workers` workers, start-up included."""
    policy_seconds: float | None = None
    """With the policy's expected stops (sha, asha); None without a stopping policy."""


def estimate_plan(run_plan: RunPlan, workers: int, calibrate: bool, startup_seconds: float) -> PlanEstimate:
    """Load each run's data and tokenizer (as `rf run` does before training), count its workload,
    build its model on the meta device, and with `calibrate` time a few real steps."""
    from rfcli.config.training import training_arguments
    from rfcli.data.sources import data_key, load_run_data
    from rfcli.models.loading import load_tokenizer
    from rfcli.trainers.host import model_key

    loaded: dict[str, Dataset] = {}
    tokenizers: dict[str, PreTrainedTokenizerBase] = {}
    lengths: dict[str, list[list[int]]] = {}
    estimates = []
    for run in run_plan.runs:
        config = run.config
        data = data_key(config)
        if data not in loaded:
            loaded[data] = load_run_data(config)[0]
        model = model_key(config.model)
        if model not in tokenizers:
            tokenizers[model] = load_tokenizer(config.model)
        with tempfile.TemporaryDirectory() as scratch:
            args = training_arguments(config, scratch)
        max_length = getattr(args, "max_length", None)
        completion = int(getattr(args, "max_completion_length", 0) or 0) if config.trainer == "grpo" else 0
        counted = json.dumps([data, model, max_length, completion])  # runs that share them count once
        if counted not in lengths:
            lengths[counted] = row_lengths(loaded[data], tokenizers[model], max_length, completion)
        workload = run_workload(config, args, len(loaded[data]), lengths[counted])
        forward = args.per_device_train_batch_size * (2 if config.trainer == "dpo" else 1)
        estimates.append(
            RunEstimate(run, workload, run_memory(config, forward, workload.longest_sequence), None)
        )
    most = worker_bytes([estimate.memory for estimate in estimates], workers)
    if not calibrate:
        return PlanEstimate(estimates, workers, most)
    return calibrated(run_plan, estimates, workers, most, startup_seconds)


def calibrated(
    run_plan: RunPlan, estimates: list[RunEstimate], workers: int, most: int, startup_seconds: float
) -> PlanEstimate:
    from rfcli.engine.pool import worker_threads
    from rfcli.estimate.calibration import calibrate

    tokens_per_step = estimates[0].workload.tokens_per_step
    calibration = calibrate(run_plan, tokens_per_step, worker_threads(workers), startup_seconds)
    timed = [
        RunEstimate(
            e.run, e.workload, e.memory, run_seconds(e.cost, calibration, first_on_worker=index < workers)
        )
        for index, e in enumerate(estimates)
    ]
    costs = [estimate.cost for estimate in timed]
    stopping = stopping_policy(run_plan.runs[0].config.policy)
    return PlanEstimate(
        timed,
        workers,
        most,
        calibration,
        sweep_seconds(costs, calibration, workers),
        sweep_seconds(costs, calibration, workers, stopping) if stopping is not None else None,
    )
