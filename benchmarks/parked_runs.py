"""Per-step training time of a run's first chunk and of its later chunks, with parked runs beside it.

    .venv/bin/python benchmarks/parked_runs.py --runs 1 4 --rounds 3

Each measurement is a fresh process that trains `--runs` LoRA runs of rf-small (batch 8, max_length
128) in `--chunks` chunks of `--steps` steps each. A timing callback records the wall time of every
optimizer step. Two variants, interleaved round by round so that both see the same load on a
shared machine:
- `rf`: the runs take turns chunk by chunk as a worker trains them (`trainers/session.py`: each
  run's `train()` suspended at its boundaries on the worker's thread, checkpoints written on a
  writer thread while the next run trains);
- `plain`: one run's `train()` on the process's own thread, as a lone TRL process trains it (its
  "first" and "later chunks" are the same steps cut at the same places).
The table gives the median step time of first chunks and of later chunks, per variant and run count.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
BATCH = 8


def child(runs: int, chunks: int, steps: int, variant: str) -> dict[str, Any]:
    """Train the runs in turns in this process; per-step seconds by (run, chunk)."""
    import torch
    from transformers import TrainerCallback

    from rfcli.config.schema import DataConfig, DataSource, ExperimentConfig, ModelConfig
    from rfcli.data.sources import load_run_data
    from rfcli.engine.worker import parking_bytes
    from rfcli.trainers.build import build_trainer
    from rfcli.trainers.host import ModelHost
    from rfcli.trainers.parking import HostBudget
    from rfcli.trainers.session import RunSession

    torch.set_num_threads(os.cpu_count() or 1)
    total_steps = chunks * steps
    config = ExperimentConfig(
        name="parked-runs",
        model=ModelConfig(name="rf-small"),
        data=DataConfig(
            train=DataSource(
                source="recipes.qa_data:chatterbot_qa", select=total_steps * BATCH, shuffle_seed=0
            )
        ),
        lora={"r": 8, "lora_alpha": 16, "target_modules": "all-linear"},
        training={"max_steps": total_steps, "per_device_train_batch_size": BATCH, "max_length": 128},
        num_chunks=chunks,
    )
    train, _ = load_run_data(config)
    host = ModelHost()
    times: dict[tuple[int, int], list[float]] = {}

    class StepTimer(TrainerCallback):
        def __init__(self, run: int) -> None:
            self.run = run
            self.chunk = 0
            self.started = 0.0

        def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.started = time.perf_counter()

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.chunk = (state.global_step - 1) // steps
            times.setdefault((self.run, self.chunk), []).append(time.perf_counter() - self.started)

    folder = Path(tempfile.mkdtemp(prefix="rf-parked-runs-"))
    if variant == "plain":  # one run, its whole train() on this thread: a lone TRL process
        model, _ = host.model_for_run(0, config)
        trainer = build_trainer(
            config, model, host.tokenizer(config.model), train, None, str(folder), reference_folder=folder
        )
        trainer.add_callback(StepTimer(0))
        trainer.train()
        return {f"0 {chunk}": values for (_, chunk), values in times.items()}
    sessions = []
    for run in range(runs):
        model, activate = host.model_for_run(run, config)
        trainer = build_trainer(
            config,
            model,
            host.tokenizer(config.model),
            train,
            None,
            str(folder / str(run) / "checkpoints"),
            reference_folder=folder / "reference-logps",
        )
        trainer.add_callback(StepTimer(run))
        sessions.append(
            RunSession(trainer, chunks, activate, lambda result: None, HostBudget(parking_bytes(1)))
        )
    for _ in range(chunks):
        for session in sessions:
            session.train_chunk()
            session.wait_written()
    for session in sessions:
        session.close()
    return {f"{run} {chunk}": values for (run, chunk), values in times.items()}


def measured(runs: list[int], variants: list[str]) -> list[tuple[int, str]]:
    """(runs, variant) pairs to measure: `plain` trains one run only."""
    pairs = [(count, variant) for count in runs for variant in variants if variant != "plain"]
    return ([(1, "plain")] if "plain" in variants else []) + pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--chunks", type=int, default=3)
    parser.add_argument("--steps", type=int, default=6, help="steps per chunk")
    parser.add_argument("--rounds", type=int, default=2)
    variants = ["plain", "rf"]
    parser.add_argument("--variants", nargs="+", default=variants, choices=variants)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        runs, variant = int(args.child[0]), args.child[1]
        print(json.dumps(child(runs, args.chunks, args.steps, variant)))
        return
    load_before = os.getloadavg()
    first: dict[tuple[str, int], list[float]] = {}
    later: dict[tuple[str, int], list[float]] = {}
    for _ in range(args.rounds):
        for runs, variant in measured(args.runs, args.variants):
            command = [sys.executable, __file__, f"--chunks={args.chunks}", f"--steps={args.steps}"]
            output = subprocess.run(
                [*command, "--child", str(runs), variant],
                cwd=REPO,
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            for key, values in json.loads(output.splitlines()[-1]).items():
                chunk = int(key.split()[1])
                steady = values[1:]  # a chunk's first step also pays for the turn's switch
                (first if chunk == 0 else later).setdefault((variant, runs), []).extend(steady)
    print(
        f"rf-small LoRA r=8, batch {BATCH}, {args.chunks} x {args.steps} steps a run, {os.cpu_count()} cores"
    )
    print("| runs | variant | first chunk, step (ms) | later chunks (ms) | later / first |")
    print("|---:|---|---:|---:|---:|")
    for runs, variant in measured(args.runs, args.variants):
        a = statistics.median(first[(variant, runs)])
        b = statistics.median(later[(variant, runs)])
        print(f"| {runs} | {variant} | {a * 1000:.0f} | {b * 1000:.0f} | {b / a:.2f} |")
    print(f"load average before/after: {load_before[0]:.2f}/{os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
