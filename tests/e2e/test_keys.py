"""The live table's keys in a real terminal: `rf run` on a pseudo-terminal, steered by key presses,
left with q, then attached to again by a second `rf run`."""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import termios
import threading
from pathlib import Path

import pytest

from rfcli.store.database import ExperimentStore
from tests.e2e.conftest import REPO_ROOT, RF, RF_TIMEOUT_S, run_rf, sweep_config, write_yaml
from tests.e2e.test_control import chunks_recorded, wait_for

pytestmark = pytest.mark.e2e
DOWN, UP = b"\x1b[B", b"\x1b[A"


def key_events(folder: Path) -> set[tuple[int | None, str]]:
    with ExperimentStore(folder / "state.db") as store:
        return {(event.run_id, event.kind) for event in store.events(limit=1000) if event.cause == "key"}


def test_keys_stop_delete_and_warm_clone_then_q_leaves_and_rf_run_attaches(tmp_path: Path) -> None:
    experiments = tmp_path / "experiments"
    config = sweep_config(experiments, "keys")
    config["lora"]["r"] = 8
    config["training"]["learning_rate"] = {"grid": [1.0e-3, 2.0e-3, 3.0e-3]}
    config["training"]["num_train_epochs"] = 6
    path = write_yaml(tmp_path / "keys.yaml", config)
    folder = experiments / "keys"

    terminal, screen_side = pty.openpty()
    fcntl.ioctl(screen_side, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 160, 0, 0))
    process = subprocess.Popen(
        [str(RF), "run", str(path)],
        cwd=REPO_ROOT,
        env={**os.environ, "TERM": "xterm-256color"},
        stdin=screen_side,
        stdout=screen_side,
        stderr=screen_side,
    )
    os.close(screen_side)
    screen = bytearray()
    reader = threading.Thread(target=read_all, args=(terminal, screen), daemon=True)
    reader.start()

    wait_for(lambda: chunks_recorded(folder) >= 1, "the first chunk")
    os.write(terminal, b"s")  # run 1 is selected first
    wait_for(lambda: (1, "stopped") in key_events(folder), "run 1 stopped by key")
    os.write(terminal, DOWN + b"d" + b"y")
    wait_for(lambda: (2, "deleted") in key_events(folder), "run 2 deleted by key")
    os.write(terminal, UP + b"w" + b"training.learning_rate=5e-3" + b"\r")
    wait_for(lambda: (4, "created") in key_events(folder), "run 4 cloned by key")
    os.write(terminal, b"q")
    assert process.wait(timeout=RF_TIMEOUT_S) == 0
    reader.join(timeout=10)
    os.close(terminal)

    shown = screen.decode(errors="replace")
    assert "s stop" in shown and "w warm clone" in shown
    # The chunk in flight (its bar), the selected run's marker, and the time left for the experiment.
    assert "in chunk" in shown and "━" in shown and "▶ 1" in shown and " left" in shown
    with ExperimentStore(folder / "state.db") as store:
        clone = store.run(4)
        paused = store.run(3).state
    assert clone.parent_id == 1 and clone.warm_start
    assert clone.config["training"]["learning_rate"] == 5e-3
    assert paused in ("ready", "pending"), "leaving pauses training instead of finishing it"

    run_rf("run", path, expect=0)  # attaches again and trains what is left
    with ExperimentStore(folder / "state.db") as store:
        states = {run.id: run.state for run in store.runs()}
    assert states == {1: "stopped", 2: "deleted", 3: "completed", 4: "completed"}


def read_all(fd: int, into: bytearray) -> None:
    """Drain the terminal so `rf run` never blocks writing to it."""
    while True:
        try:
            data = os.read(fd, 65536)
        except OSError:
            return
        if not data:
            return
        into.extend(data)
