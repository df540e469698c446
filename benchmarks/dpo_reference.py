"""DPO reference log-probs shared across runs against each run scoring its own reference.

    .venv/bin/python benchmarks/dpo_reference.py --out /tmp/rf-dpo-reference

Both sides train the 4 configs of `configs/quickstart-dpo.yaml` (beta 0.1 / 0.5 x learning rate
1e-3 / 3e-3, LoRA r=8 on rf-tiny, 456 preference pairs + 24 eval, batch 16 = 29 steps, 4 chunks)
with `rf run`, each in a fresh experiments_dir, one after the other:
- shared: rf's default. The reference log-probs of a batch's rows are scored the first time any
  run reads them (the first run, here: the runs share a seed and so the order of the rows) and kept
  in `<experiment>/reference-logps/`; the other three read them, and none of their steps runs the
  reference model.
- own: `training.precompute_ref_log_probs=false`, TRL's default: every training and eval step of
  every run runs the reference forward (the base model, adapters disabled) itself.

Figures: total wall time of each `rf run` (imports, model load and start-up included), and the sum
of the chunks' worker seconds (`rf/chunk_seconds` in the store: set-up, training, evaluation, saving).
The CPU may be shared: the load average is printed with the figures.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
RF = Path(sys.executable).parent / "rf"
CONFIG = REPO_ROOT / "configs" / "quickstart-dpo.yaml"
SIDES = {"shared": [], "own": ["training.precompute_ref_log_probs=false"]}


def train(side: str, out: Path) -> float:
    """Seconds for one `rf run` of the 4 configs."""
    overrides = [f"name=dpo-{side}", f"experiments_dir={out}", *SIDES[side]]
    started = time.perf_counter()
    result = subprocess.run(
        [str(RF), "run", str(CONFIG), *overrides],
        cwd=REPO_ROOT,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"rf run ({side}) failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    return seconds


def worker_seconds(experiment: Path) -> float:
    """Seconds the workers spent on the runs' chunks (training, evaluation, saving, setup)."""
    from rfcli.store.database import ExperimentStore

    with ExperimentStore(experiment / "state.db") as store:
        return sum(
            value
            for run in store.runs()
            for _, key, value in store.metrics(run.id)
            if key == "rf/chunk_seconds"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/rf-dpo-reference"))
    args = parser.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)
    totals = {side: train(side, args.out) for side in SIDES}
    load = os.getloadavg()[0]
    print("| reference | total wall time (s) | worker seconds in chunks |")
    print("|---|---:|---:|")
    for side, seconds in totals.items():
        print(f"| {side} | {seconds:.1f} | {worker_seconds(args.out / f'dpo-{side}'):.1f} |")
    saved = 1 - totals["shared"] / totals["own"]
    print(
        f"\nshared reference: {saved:.0%} less wall time (load average {load:.1f} on {os.cpu_count()} cores)"
    )


if __name__ == "__main__":
    main()
