"""The Ray backend against local worker processes: Ray's own start-up and shut-down, and one sweep
trained by each backend with two workers.

    .venv/bin/python benchmarks/ray_backend.py [key=value ...]

Ray: `ray.init` of a Ray for this machine alone (as `rf run --backend ray` starts it: 127.0.0.1, no
dashboard) and `ray.shutdown`, timed in this process. The sweep: `configs/quickstart.yaml` (with the
overrides given, e.g. `data.train.select=800` for a shorter one) trained by `rf run --workers 2` and
by `rf run --backend ray --workers 2`, one after the other (`--first` says which: the first also
fills caches) in fresh experiment folders; wall time of each `rf run` (imports, start-up and model
loads included), and the largest relative difference of their per-step losses. The CPU may be
shared: the load average is printed before and after.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
RF = Path(sys.executable).parent / "rf"
CONFIG = REPO_ROOT / "configs" / "quickstart.yaml"
BACKENDS = {"local": [], "ray": ["--backend", "ray"]}


def ray_start_and_stop() -> tuple[float, float]:
    import ray

    from rfcli.engine.ray_pool import connect

    started = time.perf_counter()
    connect(None)
    up = time.perf_counter() - started
    started = time.perf_counter()
    ray.shutdown()
    return up, time.perf_counter() - started


def train(backend: str, out: Path, overrides: list[str]) -> float:
    """Seconds for one `rf run` of the sweep on `backend` with two workers; its output goes to a log."""
    experiment = [f"name={backend}", f"experiments_dir={out}", *overrides]
    out.mkdir(parents=True, exist_ok=True)
    with (out / f"{backend}.log").open("w", encoding="utf-8") as log:
        started = time.perf_counter()
        subprocess.run(
            [str(RF), "run", str(CONFIG), *experiment, "--workers", "2", *BACKENDS[backend]],
            cwd=REPO_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            check=True,
        )
        return time.perf_counter() - started


def losses(experiment: Path) -> dict[tuple[int, int], float]:
    """{(run id, step): loss} from the experiment's store."""
    from rfcli.store.database import ExperimentStore

    with ExperimentStore(experiment / "state.db") as store:
        return {
            (run.id, step): value
            for run in store.runs()
            for step, key, value in store.metrics(run.id)
            if key == "loss"
        }


def largest_relative_difference(a: dict[tuple[int, int], float], b: dict[tuple[int, int], float]) -> float:
    if a.keys() != b.keys():
        return math.inf
    return max(abs(a[key] - b[key]) / abs(a[key]) for key in a)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("overrides", nargs="*", help="key=value overrides of the quickstart sweep")
    parser.add_argument("--out", type=Path, default=Path("/tmp/rf-ray-backend"))
    parser.add_argument("--first", choices=list(BACKENDS), default="local", help="which trains first")
    args = parser.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)
    load_before = os.getloadavg()[0]
    up, down = ray_start_and_stop()
    order = sorted(BACKENDS, key=lambda backend: backend != args.first)
    totals = {backend: train(backend, args.out, args.overrides) for backend in order}
    load_after = os.getloadavg()[0]
    difference = largest_relative_difference(losses(args.out / "local"), losses(args.out / "ray"))

    print(f"Ray start-up {up:.1f} s, shut-down {down:.1f} s")
    print("| backend, 2 workers | wall time (s) |")
    print("|---|---:|")
    for backend, seconds in totals.items():
        print(f"| {backend} | {seconds:.1f} |")
    print(f"\nray / local: {totals['ray'] / totals['local']:.2f} (goal <= 1.10)")
    print(f"per-step losses, largest relative difference: {difference:.1e} (goal <= 1e-5)")
    print(f"load average {load_before:.1f} before, {load_after:.1f} after, on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
