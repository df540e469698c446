"""How fast Ctrl-C ends `rf run`, and whether it ends quietly.

    .venv/bin/python benchmarks/ctrl_c.py [--trials 3] [--out /tmp/rf-ctrl-c]

Each trial starts `rf run configs/quickstart.yaml data.train.select=400` (4 runs of 24 steps, 4
chunks) in a session of its own, waits until the store records the moment's chunks (0: while the
worker still loads the trainer stack and MLflow opens; 2: mid-sweep, a chunk in flight), and sends
SIGINT to the whole process group, as a terminal's Ctrl-C does. Figures: seconds from the signal
to rf's "interrupted" line and to its exit, its exit status, whether anything on stderr warned of
leaked semaphores, and whether any process of the group outlived it. The CPU may be shared: the
load average is printed before and after.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
RF = Path(sys.executable).parent / "rf"
CONFIG = REPO_ROOT / "configs" / "quickstart.yaml"
MOMENTS = (0, 2)
"""Chunks recorded before the signal."""


@dataclass(frozen=True)
class Trial:
    chunks: int
    to_line: float | None
    to_exit: float
    status: int
    leaked: bool
    survivors: int


def chunks_recorded(state_db: Path) -> int:
    if not state_db.is_file():
        return -1
    try:
        with sqlite3.connect(f"file:{state_db}?mode=ro", uri=True, timeout=1) as db:
            return int(db.execute("SELECT COALESCE(SUM(chunks_done), 0) FROM runs").fetchone()[0])
    except sqlite3.Error:  # the store is being created
        return -1


def interrupt(chunks: int, out: Path, index: int) -> Trial:
    name = f"ctrl-c-{chunks}-{index}"
    command = [str(RF), "run", str(CONFIG), f"name={name}", f"experiments_dir={out}", "data.train.select=400"]
    process = subprocess.Popen(
        command,
        cwd=REPO_ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    lines: list[tuple[float, str]] = []

    def read(stream: object) -> None:
        for line in stream:  # type: ignore[attr-defined]
            lines.append((time.monotonic(), line))

    readers = [threading.Thread(target=read, args=(stream,)) for stream in (process.stdout, process.stderr)]
    for reader in readers:
        reader.start()
    state_db = out / name / "state.db"
    while chunks_recorded(state_db) < chunks and process.poll() is None:
        time.sleep(0.1)
    if process.poll() is not None:
        sys.exit(f"rf run ended before {chunks} chunks:\n{''.join(line for _, line in lines)[-3000:]}")
    time.sleep(1.0)  # into the next chunk (or further into start-up)
    sent = time.monotonic()
    os.killpg(process.pid, signal.SIGINT)
    process.wait()
    to_exit = time.monotonic() - sent
    for reader in readers:
        reader.join()
    said = [at - sent for at, line in lines if at >= sent and "interrupted" in line]
    survivors = still_running(process.pid)
    for pid in survivors:  # reported, then ended, so the next trial starts clean
        os.kill(int(pid), signal.SIGKILL)
    return Trial(
        chunks,
        said[0] if said else None,
        to_exit,
        process.returncode,
        any("leaked semaphore" in line for _, line in lines),
        len(survivors),
    )


def still_running(session: int) -> list[str]:
    """The processes of the session that are alive (a zombie has exited; in a container whose first
    process reaps no orphans it stays listed)."""
    listed = subprocess.run(
        ["ps", "-o", "pid=,stat=", "-s", str(session)], capture_output=True, text=True, check=False
    ).stdout
    return [pid for pid, stat in (line.split() for line in listed.splitlines()) if not stat.startswith("Z")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("/tmp/rf-ctrl-c"))
    args = parser.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)
    before = os.getloadavg()[0]
    trials = [interrupt(chunks, args.out, index) for index in range(args.trials) for chunks in MOMENTS]
    after = os.getloadavg()[0]
    print(
        "| chunks recorded | to the 'interrupted' line (s) | to exit (s) | status |"
        " leaked-semaphore warning | processes left |"
    )
    print("|---:|---:|---:|---:|---|---:|")
    for trial in trials:
        line = "-" if trial.to_line is None else f"{trial.to_line:.2f}"
        print(
            f"| {trial.chunks} | {line} | {trial.to_exit:.2f} | {trial.status} |"
            f" {'yes' if trial.leaked else 'no'} | {trial.survivors} |"
        )
    print(f"\nload average {before:.1f} before, {after:.1f} after, on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
