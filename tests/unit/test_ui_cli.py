"""`rf ui`: the real `mlflow ui` on a loopback port, stopped whole on Ctrl-C."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil
import pytest
import typer
from typer.testing import CliRunner

from rfcli.cli.ui import ui_command
from rfcli.errors import NotFoundError, UserError
from rfcli.store.database import ExperimentStore
from rfcli.store.layout import STATE_DB
from rfcli.tracking.mlflow_tracker import remember_tracking_uri
from tests.conftest import interrupt_at_default

READY_TIMEOUT_S = 60.0  # about 9 s here; leave room for a loaded machine
RUN_UI = "import typer; from rfcli.cli.ui import ui_command; typer.run(ui_command)"


def make_experiment(experiments_dir: Path, name: str) -> Path:
    folder = experiments_dir / name
    folder.mkdir(parents=True)
    ExperimentStore(folder / STATE_DB).close()  # what find_experiment looks for
    return folder


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def http_get(url: str) -> tuple[int, bytes] | None:
    try:
        with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(url, timeout=2) as response:
            return response.status, response.read()
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None


def ui_app() -> typer.Typer:
    app = typer.Typer()
    app.command()(ui_command)
    return app


def test_busy_port_is_a_user_error_before_anything_starts(tmp_path: Path) -> None:
    make_experiment(tmp_path, "exp")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(UserError, match=f"port {port} .* --port"):
            ui_command("exp", tmp_path, port)


def test_missing_experiment_is_a_user_error(tmp_path: Path) -> None:
    make_experiment(tmp_path, "sft-sweep")
    with pytest.raises(NotFoundError, match="did you mean 'sft-sweep'"):
        ui_command("sft-swep", tmp_path, free_port())


def test_remote_tracking_uri_points_there_instead(tmp_path: Path) -> None:
    folder = make_experiment(tmp_path, "shared")
    remember_tracking_uri(folder, "http://mlflow.example:5000")
    result = CliRunner().invoke(ui_app(), ["shared", "--dir", str(tmp_path)])
    assert result.exit_code == 0
    assert "http://mlflow.example:5000" in result.output


@pytest.mark.e2e
def test_ui_serves_the_experiment_and_ctrl_c_stops_every_process(tmp_path: Path) -> None:
    from rfcli.tracking.mlflow_tracker import MlflowTracker, default_tracking_uri

    folder = make_experiment(tmp_path, "sweep")
    tracker = MlflowTracker(default_tracking_uri(folder), "sweep")
    tracker.start_run("run-1", {"lora.r": 8}, {})
    port = free_port()
    base = f"http://127.0.0.1:{port}"

    cli = subprocess.Popen(
        [sys.executable, "-c", RUN_UI, "sweep", "--dir", str(tmp_path), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=interrupt_at_default,
    )
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while (answer := http_get(base)) is None or answer[0] != 200:
            assert cli.poll() is None, f"rf ui exited early:\n{cli.stdout.read() if cli.stdout else ''}"
            assert time.monotonic() < deadline, f"no HTTP 200 from {base} after {READY_TIMEOUT_S:.0f} s"
            time.sleep(0.5)

        found = http_get(f"{base}/api/2.0/mlflow/experiments/get-by-name?experiment_name=sweep")
        assert found is not None and found[0] == 200
        assert json.loads(found[1])["experiment"]["experiment_id"] == tracker.experiment_id
        server_processes = psutil.Process(cli.pid).children(recursive=True)
        assert len(server_processes) >= 2  # mlflow ui and its uvicorn child at least

        cli.send_signal(signal.SIGINT)  # what Ctrl-C sends
        output, _ = cli.communicate(timeout=30)
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.wait()

    assert cli.returncode == 0, output
    assert base in output and "sweep" in output
    assert "Stopping the MLflow UI" in output
    left = [process for process in server_processes if _running(process)]
    assert left == [], f"still running after rf ui stopped: {[process.cmdline() for process in left]}"
    assert http_get(base) is None


def _running(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
