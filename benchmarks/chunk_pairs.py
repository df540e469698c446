"""`rf run` in N chunks against `rf run` in 1 chunk, side by side, in pairs of both orders.

    .venv/bin/python benchmarks/chunk_pairs.py --shape quickstart --pairs 3
    .venv/bin/python benchmarks/chunk_pairs.py --shape sft-sweep --steps 48 --pairs 3

Cutting runs into chunks should cost nothing but the evaluations it adds. Each pair runs the same
sweep twice, in fresh experiment folders, once with `num_chunks=1` and once with `--num-chunks`;
pair 1 runs 1 chunk first, pair 2 the chunks first, and so on, so a trend in the machine's load
shows as a ratio that flips with the order. Shapes:
- `quickstart`: `configs/quickstart.yaml` with `model.name=rf-small training.max_steps=96
  training.per_device_train_batch_size=8 data.eval_fraction=0.01` (4 runs: 2 learning rates x 2
  LoRA ranks), the command a user would try first on a real model;
- `sft-sweep`: the 4 configs of `benchmarks/sft_sweep.py` at `--steps` steps.

Figures per run: the whole process's wall time, and the median training time of an optimizer step
over every chunk of every run (a chunk's seconds less its set-up, evaluation and checkpoint
hand-off, divided by its steps), so a slower step shows apart from a boundary's cost.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

QUICKSTART_OVERRIDES = [
    "model.name=rf-small",
    "training.max_steps=96",
    "training.per_device_train_batch_size=8",
    "data.eval_fraction=0.01",
]


def sweep_file(shape: str, steps: int, out: Path) -> tuple[Path, list[str], str]:
    """The config file, its overrides, and its experiment's name."""
    if shape == "quickstart":
        return REPO / "configs" / "quickstart.yaml", QUICKSTART_OVERRIDES, "quickstart"
    from benchmarks.sft_sweep import rf_config

    path = out / "sft-sweep-bench.yaml"
    path.write_text(rf_config(steps, 1))
    return path, [], "sft-sweep-bench"


def timed_run(config: Path, overrides: list[str], name: str, chunks: int, out: Path) -> dict[str, Any]:
    """One `rf run` in a fresh experiments folder: its wall time and its per-step training time."""
    from rfcli.store.database import ExperimentStore
    from rfcli.store.experiments import experiment_folder
    from rfcli.store.layout import STATE_DB

    experiments = out / f"experiments-{chunks}"
    shutil.rmtree(experiments, ignore_errors=True)
    rf = Path(sys.executable).parent / "rf"
    command = [
        str(rf),
        "run",
        str(config),
        *overrides,
        f"num_chunks={chunks}",
        f"experiments_dir={experiments}",
    ]
    load = os.getloadavg()[0]
    started = time.monotonic()
    with open(out / f"rf-{chunks}.log", "w") as log:
        subprocess.run(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, check=True)
    seconds = time.monotonic() - started
    step_times = []
    with ExperimentStore(experiment_folder(experiments, name) / STATE_DB, create=False) as store:
        for run in store.runs():
            by_key: dict[str, dict[int, float]] = {}
            for step, key, value in store.metrics(run.id):
                by_key.setdefault(key, {})[step] = value
            previous = 0
            for step, chunk in sorted(by_key["rf/chunk_seconds"].items()):
                boundary = sum(
                    by_key.get(key, {}).get(step, 0.0) for key in ("eval_runtime", "rf/save_seconds")
                )
                training = chunk - by_key.get("rf/setup_seconds", {}).get(step, 0.0) - boundary
                step_times.append(training / (step - previous))
                previous = step
    return {
        "chunks": chunks,
        "seconds": seconds,
        "step": statistics.median(step_times),
        "load": load,
        "command": shlex.join(command),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=("quickstart", "sft-sweep"), default="quickstart")
    parser.add_argument("--steps", type=int, default=48, help="steps of each sft-sweep config")
    parser.add_argument("--num-chunks", type=int, default=4)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "rf-chunk-pairs")
    args = parser.parse_args()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    config, overrides, name = sweep_file(args.shape, args.steps, out)
    print(f"{args.shape}: {shlex.join([str(config), *overrides])}, {os.cpu_count()} cores")
    print(
        f"| pair | order | 1 chunk (s) | {args.num_chunks} chunks (s) | ratio "
        f"| step, 1 / {args.num_chunks} (ms) | load |"
    )
    print("|---:|---|---:|---:|---:|---:|---|")
    for pair in range(args.pairs):
        order = [1, args.num_chunks] if pair % 2 == 0 else [args.num_chunks, 1]
        runs = {chunks: timed_run(config, overrides, name, chunks, out) for chunks in order}
        one, many = runs[1], runs[args.num_chunks]
        said = " then ".join(f"{chunks} chunk{'s' if chunks > 1 else ''}" for chunks in order)
        loads = "/".join(f"{runs[chunks]['load']:.1f}" for chunks in order)
        print(
            f"| {pair + 1} | {said} | {one['seconds']:.1f} | {many['seconds']:.1f} | "
            f"{many['seconds'] / one['seconds']:.3f} | "
            f"{one['step'] * 1000:.0f} / {many['step'] * 1000:.0f} | {loads} |",
            flush=True,
        )
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
