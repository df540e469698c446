"""A small finished sweep written straight into a state store, for the results commands' unit tests."""

from __future__ import annotations

import math
from pathlib import Path

from rfcli.store.database import ExperimentStore
from rfcli.store.experiments import STATE_DB, experiment_folder

SETTINGS = {1: (8, 1e-3), 2: (8, 3e-3), 3: (32, 1e-3), 4: (32, 3e-3)}
"""run id -> (lora r, learning rate)"""
EVAL_LOSS = {1: 2.5, 2: 2.1, 3: 2.3, 4: math.nan}


def write_sweep(experiments_dir: Path, name: str = "sweep") -> Path:
    """Four runs: 1 and 3 completed, 2 stopped by a policy at step 8, 4 failed with a NaN loss."""
    folder = experiment_folder(experiments_dir, name)
    with ExperimentStore(folder / STATE_DB) as store:
        for run_id, (r, lr) in SETTINGS.items():
            config = {"lora": {"r": r, "lora_alpha": 16}, "training": {"learning_rate": lr}, "seed": 0}
            store.add_run(run_id, config, f"fp{run_id}", name=f"run {run_id}", cause="plan")
            store.set_plan_totals(run_id, total_chunks=2, max_steps=16)
            last = 8 if run_id in (2, 4) else 16
            losses = [(step, "loss", 3.0 - step * 0.05 * run_id) for step in range(1, last + 1)]
            evals = [(8, "eval_loss", EVAL_LOSS[run_id] + 0.2)] + (
                [(16, "eval_loss", EVAL_LOSS[run_id])] if last == 16 else []
            )
            if run_id == 2:
                evals = [(8, "eval_loss", EVAL_LOSS[run_id])]
            store.record_chunk(
                run_id,
                chunks_done=last // 8,
                global_step=last,
                checkpoint=str(folder / "runs" / str(run_id) / "checkpoints" / f"checkpoint-{last}"),
                metrics=losses + evals,
            )
        for run_id in (1, 3, 4):
            store.set_state(run_id, "running", cause="scheduler", worker=0)
        store.set_state(1, "completed", cause="scheduler")
        store.set_state(3, "completed", cause="scheduler")
        store.set_state(2, "stopped", cause="policy", detail="rung 1: eval_loss below the cutoff")
        store.add_metrics(4, [(9, "loss", math.nan)])
        store.set_state(4, "failed", cause="error", error="NonFiniteLossError: loss is nan at step 9")
    return folder
