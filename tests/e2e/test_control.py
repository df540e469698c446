"""Steering and crash safety end to end: `rf ctl` during a real `rf run`, twenty commands at once,
and `kill -9` of `rf run` at several points followed by a resume that ends where an uninterrupted
run ends. The steered and the killed sweeps train on two workers, so runs also move between them."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from rfcli.store.database import ExperimentStore
from rfcli.tracking.mlflow_tracker import MlflowTracker, tracking_uri_for
from tests.conftest import interrupt_at_default
from tests.e2e.conftest import REPO_ROOT, RF, RF_TIMEOUT_S, describe, run_rf, sweep_config, write_yaml

pytestmark = pytest.mark.e2e
REL_TOL = 1e-5


def start_rf(*args: str | Path, own_group: bool = False) -> subprocess.Popen[str]:
    """`rf ARGS` in the background; `own_group`: in a process group of its own, workers included."""
    return subprocess.Popen(
        [str(RF), *map(str, args)],
        cwd=REPO_ROOT,
        env=os.environ,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=own_group,
        preexec_fn=interrupt_at_default if own_group else None,
    )


def wait_for(condition: Callable[[], bool], what: str, timeout: float = RF_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def chunks_recorded(folder: Path) -> int:
    if not (folder / "state.db").exists():
        return 0
    with ExperimentStore(folder / "state.db") as store:
        return sum(run.chunks_done for run in store.runs())


def has_chunks(folder: Path, count: int) -> bool:
    return (folder / "state.db").exists() and chunks_recorded(folder) >= count


def series(folder: Path, key: str) -> dict[int, dict[int, float]]:
    with ExperimentStore(folder / "state.db") as store:
        return {
            run.id: {step: value for step, name, value in store.metrics(run.id) if name == key}
            for run in store.runs()
        }


def assert_same(actual: dict[int, float], expected: dict[int, float], what: str) -> None:
    assert actual.keys() == expected.keys(), what
    for step, value in expected.items():
        assert math.isclose(actual[step], value, rel_tol=REL_TOL), f"{what} at step {step}"


def two_run_config(experiments: Path, name: str) -> dict[str, Any]:
    """Two runs of 32 steps (2 epochs of 16) in 8 chunks, warmup over 2 chunks, LoRA dropout on."""
    config = sweep_config(experiments, name)
    config["lora"]["r"] = 8
    config["training"]["num_train_epochs"] = 2
    return config


def test_kill_9_at_several_points_then_resume_ends_as_an_uninterrupted_run(tmp_path: Path) -> None:
    experiments = tmp_path / "experiments"
    reference = write_yaml(tmp_path / "reference.yaml", two_run_config(experiments, "reference"))
    run_rf("run", reference, expect=0)
    crashed = write_yaml(tmp_path / "crashed.yaml", two_run_config(experiments, "crashed"))
    folder = experiments / "crashed"

    for killed_after in (0, 3, 9):  # at start-up, early in the sweep, in its second epoch
        process = start_rf("run", crashed, "--workers", "2")  # runs move between workers too
        wait_for(partial(has_chunks, folder, killed_after), f"{killed_after} chunks")
        time.sleep(0.5)  # land inside the next chunk
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    run_rf("run", crashed, expect=0)

    with ExperimentStore(folder / "state.db") as store:
        assert all(run.state == "completed" for run in store.runs())
        recoveries = [event for event in store.events(limit=500) if event.cause == "recovery"]
    assert recoveries, "a killed rf run left runs to recover"
    for key in ("loss", "learning_rate"):
        expected, actual = series(experiments / "reference", key), series(folder, key)
        for run_id in expected:
            assert_same(actual[run_id], expected[run_id], f"run {run_id} {key}")
    tracker = MlflowTracker(tracking_uri_for(folder), "crashed")
    with ExperimentStore(folder / "state.db") as store:
        for run in store.runs():
            assert run.mlflow_run_id is not None
            steps = [step for step, _ in tracker.metric_history(run.mlflow_run_id, "loss")]
            assert steps == list(range(1, run.max_steps + 1)), f"run {run.id}: each step logged once"  # type: ignore[operator]


def test_ctrl_c_stops_at_once_with_status_130_and_no_traceback_then_rf_run_resumes(tmp_path: Path) -> None:
    experiments = tmp_path / "experiments"
    path = write_yaml(tmp_path / "interrupted.yaml", two_run_config(experiments, "interrupted"))
    folder = experiments / "interrupted"
    process = start_rf("run", path, own_group=True)
    wait_for(partial(has_chunks, folder, 2), "two chunks")
    os.killpg(process.pid, signal.SIGINT)  # as a terminal's Ctrl-C: the workers get it too
    output, _ = process.communicate(timeout=30)
    assert process.returncode == 130, output
    assert "interrupted" in output and "Traceback" not in output, output
    assert "leaked semaphore" not in output, output  # a worker killed mid-chunk leaves no lock behind
    with ExperimentStore(folder / "state.db") as store:
        assert all(run.state != "running" for run in store.runs())

    run_rf("run", path, expect=0)
    with ExperimentStore(folder / "state.db") as store:
        for run in store.runs():
            assert run.state == "completed"
            steps = [step for step, key, _ in store.metrics(run.id) if key == "loss"]
            assert sorted(steps) == list(range(1, (run.max_steps or 0) + 1)), "each step recorded once"


def test_ctl_stops_resumes_deletes_and_clones_during_a_run(tmp_path: Path) -> None:
    experiments = tmp_path / "experiments"
    config = two_run_config(experiments, "steered")
    config["training"]["learning_rate"] = {"grid": [1.0e-3, 2.0e-3, 3.0e-3]}
    config["training"]["num_train_epochs"] = 4
    path = write_yaml(tmp_path / "steered.yaml", config)
    folder = experiments / "steered"
    ctl = ["--dir", str(experiments), "--experiment", "steered"]

    process = start_rf("run", path, "--workers", "2")
    wait_for(lambda: chunks_recorded(folder) >= 2, "the first chunks")
    run_rf("ctl", "stop", "1", *ctl, "--wait", "60", expect=0)
    run_rf("ctl", "delete", "3", *ctl, "--wait", "60", expect=0)
    assert "is deleted" in run_rf("ctl", "resume", "3", *ctl, expect=2).stderr
    assert "is deleted" in run_rf("ctl", "clone", "3", "--warm", *ctl, expect=2).stderr
    bad = run_rf("ctl", "clone", "2", "training.lerning_rate=1e-2", *ctl, expect=2)
    assert "did you mean 'learning_rate'" in bad.stderr and "Traceback" not in bad.stderr
    with ExperimentStore(folder / "state.db") as store:
        parent_step = store.run(2).global_step
    # These apply live, or (if the sweep finished meanwhile) when `rf run` attaches again below.
    warm = ["training.learning_rate=5e-3", "training.max_steps=80"]  # the parent stops at 64
    run_rf("ctl", "clone", "2", "--warm", *warm, *ctl, expect=0)
    run_rf("ctl", "clone", "1", "training.learning_rate=1e-4", *ctl, expect=0)
    run_rf("ctl", "resume", "1", *ctl, expect=0)
    output, _ = process.communicate(timeout=RF_TIMEOUT_S)
    assert process.returncode == 0, output
    # With no rf run attached, rf ctl makes the clone itself and names it; the experiment's stored
    # plan, without the file, trains it (and any clone above that came after the sweep ended).
    late = run_rf("ctl", "clone", "1", "training.learning_rate=2e-4", *ctl, expect=0).stdout
    assert late == (
        "clone run 1: applied: made run 6 (clone of 1 training.learning_rate=2e-4); "
        f"`rf run -e steered --dir {experiments}` trains it\n"
    )
    run_rf("run", "-e", "steered", "--dir", experiments, expect=0)

    with ExperimentStore(folder / "state.db") as store:
        runs = {run.id: run for run in store.runs()}
        events = store.events(limit=500)
        clone_losses = [step for step, key, _ in store.metrics(4) if key == "loss"]
    assert [runs[i].state for i in (1, 2, 3, 4, 5, 6)] == [
        "completed",
        "completed",
        "deleted",
        "completed",
        "completed",
        "completed",
    ]
    assert not (folder / "runs" / "3").exists()
    by_rf_ctl = {(e.run_id, e.kind) for e in events if e.cause == "rf ctl"}
    assert {(1, "stopped"), (1, "ready"), (3, "deleted"), (4, "created")} <= by_rf_ctl
    clone = runs[4]
    assert clone.parent_id == 2 and clone.warm_start
    assert clone.config["training"]["learning_rate"] == 5e-3
    assert clone.max_steps == 80
    assert runs[5].parent_id == 1 and not runs[5].warm_start
    assert runs[5].max_steps == runs[1].max_steps, "a clone keeps its parent's max_steps"
    assert min(clone_losses) > parent_step, "a warm clone continues from its parent's step"
    tracker = MlflowTracker(tracking_uri_for(folder), "steered")
    assert clone.mlflow_run_id is not None
    tags = tracker._client.get_run(clone.mlflow_run_id).data.tags  # noqa: SLF001
    assert tags["rf.parent"] == "2" and tags["rf.warm_start"] == "true"


def test_twenty_ctl_commands_at_once_are_all_applied(tmp_path: Path) -> None:
    experiments = tmp_path / "experiments"
    config = sweep_config(experiments, "crowd")
    config["lora"]["r"] = 4
    config["training"]["learning_rate"] = {"grid": [round(1e-4 * (i + 1), 6) for i in range(20)]}
    path = write_yaml(tmp_path / "crowd.yaml", config)
    folder = experiments / "crowd"

    process = start_rf("run", path)
    wait_for(lambda: (folder / "state.db").exists() and len(stored_ids(folder)) == 20, "the plan")
    senders = [
        subprocess.Popen(
            [str(RF), "ctl", "stop", str(run_id), "--dir", str(experiments), "-e", "crowd", "--wait", "0"],
            cwd=REPO_ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for run_id in range(1, 21)
    ]
    for sender in senders:
        assert sender.wait(timeout=120) == 0, sender.stderr.read() if sender.stderr else ""
    output, _ = process.communicate(timeout=RF_TIMEOUT_S)
    assert process.returncode == 0, output

    with ExperimentStore(folder / "state.db") as store:
        commands = [store.command(command_id) for command_id in range(1, 21)]
        runs = store.runs()
        delays = control_delays(store)
    assert sorted(c.run_id for c in commands) == list(range(1, 21))
    assert all(c.outcome == "applied" for c in commands), [(c.run_id, c.outcome, c.error) for c in commands]
    assert all(run.state == "stopped" for run in runs)
    print(f"control delay after a chunk boundary or command: max {max(delays) * 1000:.0f} ms")


def stored_ids(folder: Path) -> list[int]:
    with ExperimentStore(folder / "state.db") as store:
        return [run.id for run in store.runs()]


def control_delays(store: ExperimentStore) -> list[float]:
    """Seconds from the moment a command could apply (its arrival, the controller's start, or the end
    of the chunk its run was training) to the moment it applied."""
    events = sorted(store.events(limit=10_000), key=lambda event: event.id)
    started = max(e.time for e in events if e.run_id is None and e.kind == "started")
    delays = []
    for command_id in range(1, 10_000):
        try:
            command = store.command(command_id)
        except KeyError:
            break
        chunk_ends = [
            e.time
            for e in events
            if e.run_id == command.run_id and e.cause == "scheduler" and e.kind == "ready"
            if command.created_at <= e.time <= (command.finished_at or e.time)
        ]
        ready_at = max([command.created_at, started, *chunk_ends])
        assert command.finished_at is not None
        delays.append(command.finished_at - ready_at)
    return delays


def test_rf_run_output_without_a_terminal_is_plain_lines(tmp_path: Path) -> None:
    path = write_yaml(tmp_path / "plain.yaml", sweep_config(tmp_path / "experiments", "plain"))
    result = run_rf("run", path, expect=0)
    assert "run 1: chunk 1/4" in result.stdout, describe(result)
    assert "\x1b[" not in result.stdout  # no cursor movement or colour codes in a log
