"""`rf run --backend ray` end to end: Ray actors train the same steps as local worker processes, on
a Ray that `rf run` starts for this machine, and on a simulated two-node cluster where an actor is
killed mid-chunk; keys, `rf ctl`, `rf status` and a `kill -9` of `rf run` work as on the local
backend. Three runs on two workers, so runs move between workers (and nodes)."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pty
import re
import shutil
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rfcli.store.database import ExperimentStore
from tests.e2e.conftest import REPO_ROOT, RF, run_rf, sweep_config, write_yaml
from tests.e2e.test_control import chunks_recorded, start_rf, wait_for
from tests.e2e.test_keys import key_events, read_all
from tests.e2e.test_run_cli import (
    assert_same_series,
    mlflow_runs,
    mlflow_step_counts,
    most_runs_training_at_once,
    stored_runs,
    stored_series,
)

pytestmark = pytest.mark.e2e
LOOPBACK_ONLY = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(config file, folder of the sweep trained by two local worker processes): three runs."""
    folder = tmp_path_factory.mktemp("ray")
    config = sweep_config(folder / "experiments", "local")
    config["lora"]["r"] = 4
    config["training"]["learning_rate"] = {"grid": [1.0e-3, 3.0e-3, 1.0e-2]}
    path = write_yaml(folder / "sweep.yaml", config)
    run_rf("run", path, "--workers", "2", expect=0)
    return path, folder / "experiments"


@pytest.fixture(scope="module")
def two_node_cluster() -> Iterator[str]:
    """A Ray head and one more node on this machine, one CPU each, bound to 127.0.0.1: its address."""
    with pytest.MonkeyPatch.context() as patch:
        for key, value in LOOPBACK_ONLY.items():
            patch.setenv(key, value)  # the nodes, and the `rf run` that joins them, inherit these
        from ray.cluster_utils import Cluster

        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
        cluster.add_node(num_cpus=1)
        try:
            yield cluster.address
        finally:
            cluster.shutdown()


LISTENING = """
import json, os, subprocess
import ray  # first, as a user's data, reward or metric module may have imported it
from rfcli.engine.ray_pool import connect

connect(None)
ray.get(ray.remote(lambda: os.getpid()).remote())  # a worker process of Ray's, listening too
ours = subprocess.run(["ps", "-o", "pid=", "-s", str(os.getsid(0))], capture_output=True, text=True)
pids = {f"pid={pid}," for pid in ours.stdout.split()}
sockets = subprocess.run(["ss", "-Hlntup"], capture_output=True, text=True).stdout.splitlines()
ours = [line.split() for line in sockets if any(pid in line for pid in pids)]
print(json.dumps([f"{fields[4]} {fields[-1]}" for fields in ours]))
ray.shutdown()
"""


@pytest.mark.skipif(shutil.which("ss") is None, reason="needs ss (iproute2) to list listening sockets")
def test_a_ray_for_this_machine_listens_on_loopback_only_even_when_ray_was_imported_first() -> None:
    environment = {key: value for key, value in os.environ.items() if key not in LOOPBACK_ONLY}
    result = subprocess.run(
        [sys.executable, "-c", LISTENING],
        cwd=REPO_ROOT,
        env={**environment, "RAY_USAGE_STATS_ENABLED": "0"},  # and no loopback switch set beforehand
        capture_output=True,
        text=True,
        timeout=300,
        start_new_session=True,  # its session: Ray's servers, agents and workers, and nothing else
    )
    assert result.returncode == 0, result.stderr[-3000:]
    listening = json.loads(result.stdout.strip().splitlines()[-1])
    assert any("gcs_server" in line for line in listening) and any("raylet" in line for line in listening)
    loopback = ("127.0.0.1:", "[::ffff:127.0.0.1]:", "[::1]:")
    assert [line for line in listening if not line.startswith(loopback)] == [], listening


def started_detail(folder: Path) -> str:
    with ExperimentStore(folder / "state.db") as store:
        return next(
            (event.detail or "" for event in store.events(limit=10_000) if event.kind == "started"), ""
        )


def workers_by_run(folder: Path) -> dict[int, set[int]]:
    """{run id: the workers that trained its chunks}, from the 'running' events."""
    trained: dict[int, set[int]] = {}
    with ExperimentStore(folder / "state.db") as store:
        for event in store.events(limit=10_000):
            if event.kind == "running" and event.run_id is not None and event.detail:
                trained.setdefault(event.run_id, set()).add(int(event.detail.removeprefix("worker ")))
    return trained


def moved(folder: Path) -> bool:
    """Whether a run has trained on both workers (so on both nodes)."""
    return any(workers == {0, 1} for workers in workers_by_run(folder).values())


def busy_worker(folder: Path) -> int | None:
    """A worker training a chunk now, if any."""
    with ExperimentStore(folder / "state.db") as store:
        return next((run.worker for run in store.runs() if run.state == "running"), None)


def assert_same_losses_as_local(local: Path, ray: Path) -> None:
    assert [run.state for run in stored_runs(ray)] == ["completed"] * 3
    assert_same_series(stored_series(local, "loss"), stored_series(ray, "loss"), "loss")
    assert_same_series(stored_series(local, "learning_rate"), stored_series(ray, "learning_rate"), "lr")
    with ExperimentStore(ray / "state.db") as store:
        for run in store.runs():
            losses = [step for step, key, _ in store.metrics(run.id) if key == "loss"]
            assert sorted(losses) == list(range(1, (run.max_steps or 0) + 1)), "each step recorded once"
    tracker, logged = mlflow_runs(ray)
    assert len(logged) == 3
    for mlflow_run in logged:
        for key, steps in mlflow_step_counts(tracker, mlflow_run).items():
            assert len(steps) == len(set(steps)), f"{key} logged twice at a step in MLflow"
    assert not list(ray.glob(".shared-folder-probe-*")), "the probe files are removed"


def test_ray_actors_train_the_same_steps_as_local_workers(sweeps: tuple[Path, Path]) -> None:
    config, experiments = sweeps
    run_rf("run", config, "name=ray-local", "--backend", "ray", "--workers", "2", expect=0)
    folder = experiments / "ray-local"

    detail = started_detail(folder)
    assert detail.startswith("2 Ray actor(s) on 1 node(s): worker 0 on node "), detail
    assert detail.count(", 127.0.0.1), pid ") == 2, "the Ray that rf run starts binds to 127.0.0.1"
    assert most_runs_training_at_once(folder) == 2
    assert set().union(*workers_by_run(folder).values()) == {0, 1}
    assert_same_losses_as_local(experiments / "local", folder)


def test_two_nodes_share_runs_and_an_actor_killed_mid_chunk_loses_only_that_chunk(
    sweeps: tuple[Path, Path], two_node_cluster: str
) -> None:
    config, experiments = sweeps
    folder = experiments / "ray-cluster"
    process = start_rf(
        "run", config, "name=ray-cluster", "--backend", "ray", "--address", two_node_cluster, "--workers", "2"
    )
    wait_for(lambda: (folder / "state.db").exists() and "Ray actor" in started_detail(folder), "the actors")
    detail = started_detail(folder)
    assert detail.startswith("2 Ray actor(s) on 2 node(s)"), detail
    pids = {int(worker): int(pid) for worker, pid in re.findall(r"worker (\d) on [^;]*pid (\d+)", detail)}
    assert pids.keys() == {0, 1}, detail
    wait_for(lambda: moved(folder) and busy_worker(folder) is not None, "a run moving to the other node")
    time.sleep(0.2)  # into the chunk
    os.kill(pids[busy_worker(folder) or 0], signal.SIGKILL)
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 0, output

    with ExperimentStore(folder / "state.db") as store:
        lost = [e for e in store.events(limit=10_000) if e.cause == "recovery" and "died" in (e.detail or "")]
    assert lost, output
    assert "trains chunk" in output and "again" in output
    assert_same_losses_as_local(experiments / "local", folder)


def run_states(folder: Path) -> dict[int, str]:
    with ExperimentStore(folder / "state.db") as store:
        return {run.id: run.state for run in store.runs()}


def test_keys_ctl_status_and_kill_9_then_restart_work_on_ray_as_on_local(
    sweeps: tuple[Path, Path], tmp_path: Path
) -> None:
    """Run 1 stopped by key and resumed by `rf ctl`, `rf status` read meanwhile, `rf run` killed with
    -9 mid-sweep and started again: every step trained as by the uninterrupted local sweep (in 8
    chunks here against its 4: chunking does not change a step)."""
    config, experiments = sweeps
    folder = experiments / "ray-steered"
    args = [str(config), "name=ray-steered", "num_chunks=8", "--backend", "ray", "--workers", "2"]
    terminal, screen_side = pty.openpty()
    fcntl.ioctl(screen_side, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 160, 0, 0))
    process = subprocess.Popen(
        [str(RF), "run", *args],
        cwd=REPO_ROOT,
        env={**os.environ, "TERM": "xterm-256color"},
        stdin=screen_side,
        stdout=screen_side,
        stderr=screen_side,
        start_new_session=True,  # its Ray's processes too, so the test can clear what a kill -9 leaves
    )
    os.close(screen_side)
    screen = bytearray()
    threading.Thread(target=read_all, args=(terminal, screen), daemon=True).start()
    try:
        wait_for(lambda: chunks_recorded(folder) >= 1, "the first chunk")
        os.write(terminal, b"s")  # run 1 is selected first
        wait_for(lambda: (1, "stopped") in key_events(folder), "run 1 stopped by key")
        status = run_rf("status", "ray-steered", "--dir", experiments, "--json", expect=0)
        assert {run["id"]: run["state"] for run in json.loads(status.stdout)["runs"]}[1] == "stopped"
        run_rf("ctl", "resume", "1", "--dir", experiments, "--experiment", "ray-steered", expect=0)
        wait_for(lambda: run_states(folder)[1] != "stopped", "run 1 resumed by rf ctl")
        wait_for(lambda: chunks_recorded(folder) >= 8, "a third of the sweep")
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # Ray's servers and agents a killed `rf run` leaves
        os.close(terminal)
    assert run_states(folder) != {1: "completed", 2: "completed", 3: "completed"}, "killed mid-sweep"

    run_rf("run", *args, expect=0)
    with ExperimentStore(folder / "state.db") as store:
        events = store.events(limit=10_000)
    assert any(event.cause == "recovery" for event in events), "the killed rf run left runs to recover"
    assert {(1, "ready")} <= {(event.run_id, event.kind) for event in events if event.cause == "rf ctl"}
    assert_same_losses_as_local(experiments / "local", folder)
