"""How fast the commands a person types between runs answer: `rf --help`, `rf status` and `rf ls`.

    .venv/bin/python benchmarks/cli_startup.py [--rounds 10] [--runs 32]

Each command runs `--rounds` times as a fresh process on an experiment of `--runs` runs with four
chunks recorded each (written straight into a state store), interleaved with `python -c pass`, so
that every figure sees the same load on a shared machine; the medians are printed, and each command
as a ratio to a bare interpreter start. The load average is printed before and after.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rfcli.store.database import ExperimentStore
from rfcli.store.experiments import STATE_DB, experiment_folder

RF = Path(sys.executable).parent / "rf"


def experiment(folder: Path, runs: int) -> None:
    with ExperimentStore(experiment_folder(folder, "startup") / STATE_DB) as store:
        for run_id in range(1, runs + 1):
            store.add_run(run_id, {"lora": {"r": run_id}}, f"fp{run_id}", name=str(run_id), cause="plan")
            store.set_plan_totals(run_id, total_chunks=4, max_steps=64)
            store.set_state(run_id, "running", cause="scheduler", worker=0)
            for chunk in range(1, 5):
                rows = [(step, "loss", 1.0 / step) for step in range(16 * chunk - 15, 16 * chunk + 1)]
                store.record_chunk(
                    run_id, chunks_done=chunk, global_step=16 * chunk, checkpoint="c", metrics=rows
                )
            store.set_state(run_id, "completed", cause="scheduler")


def seconds(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--runs", type=int, default=32)
    options = parser.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory() as folder:
        experiment(Path(folder), options.runs)
        commands = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "rf --help": [str(RF), "--help"],
            f"rf status ({options.runs} runs)": [str(RF), "status", "startup", "--dir", folder],
            "rf ls": [str(RF), "ls", "--dir", folder],
        }
        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(options.rounds):
            for name, command in commands.items():
                times[name].append(seconds(command))
    bare = statistics.median(times["python -c pass"])
    for name, measured in times.items():
        median = statistics.median(measured)
        print(
            f"{name:24} {median:6.3f} s median of {options.rounds}  ({median / bare:4.1f} x python -c pass)"
        )
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
