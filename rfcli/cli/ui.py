"""`rf ui [EXPERIMENT]`: serve the MLflow UI on an experiment's runs until Ctrl-C."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from rfcli.cli.options import DirOption, ExperimentArgument
from rfcli.errors import UserError

UI_HOST = "127.0.0.1"
UI_LOG = "mlflow-ui.log"  # the server's own output, kept in the experiment folder
READY_TIMEOUT_S = 60.0  # `mlflow ui` answers after about 9 s here; a cold first start can take longer
STOP_TIMEOUT_S = 10.0  # after SIGTERM, how long the server's processes get before SIGKILL
REMOTE_URI_PREFIXES = ("http://", "https://", "databricks")

PortOption = Annotated[int, typer.Option("--port", help="Port for the UI on 127.0.0.1.")]


def ui_command(
    experiment: ExperimentArgument = None,
    experiments_dir: DirOption = Path("rf-experiments"),
    port: PortOption = 5000,
) -> None:
    """Serve the MLflow UI for EXPERIMENT on http://127.0.0.1:PORT until Ctrl-C."""
    from rfcli.store.database import ExperimentStore
    from rfcli.store.experiments import find_experiment
    from rfcli.store.layout import ExperimentLayout
    from rfcli.tracking.mlflow_tracker import check_tracking_store, tracking_uri_for

    folder = find_experiment(experiment, search_dir=experiments_dir)
    with ExperimentStore(ExperimentLayout(folder).state_db, create=False) as store:
        tracked = [run.id for run in store.runs() if run.mlflow_run_id]
    check_tracking_store(folder, tracked)  # MLflow's UI would make a fresh store in a damaged one's place
    tracking_uri = tracking_uri_for(folder)
    console = Console(soft_wrap=True)
    if tracking_uri.startswith(REMOTE_URI_PREFIXES):
        console.print(f"Experiment [bold]{folder.name}[/] is tracked on {tracking_uri}: open it there.")
        return
    ensure_port_free(port)

    url = f"http://{UI_HOST}:{port}"
    log_path = folder.resolve() / UI_LOG
    stop_on_signals()
    server = start_ui_server(tracking_uri, port, cwd=folder, log_path=log_path)
    try:
        console.print(f"Starting the MLflow UI for experiment [bold]{folder.name}[/] ({tracking_uri})")
        if wait_until_serving(url, server, READY_TIMEOUT_S):
            console.print(f"Open {url} (Ctrl-C stops it)")
        elif server.poll() is None:
            console.print(f"Still starting after {READY_TIMEOUT_S:.0f} s; its output goes to {log_path}")
        server.wait()  # returns only if the server stops by itself
        console.print(f"[bold red]error:[/] the MLflow UI stopped (exit {server.returncode}):")
        console.print(log_tail(log_path), highlight=False, markup=False)
        raise typer.Exit(1)
    except KeyboardInterrupt:
        console.print("Stopping the MLflow UI...")
    finally:
        stop_ui_server(server)


def ensure_port_free(port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind((UI_HOST, port))
        except OSError as error:
            raise UserError(
                f"port {port} on {UI_HOST} is not free ({error.strerror}); pass another one with --port"
            ) from None


def start_ui_server(tracking_uri: str, port: int, *, cwd: Path, log_path: Path) -> subprocess.Popen[bytes]:
    """`mlflow ui` in its own session (and so process group), for `stop_ui_server` to end whole.

    One worker and no job runner: the defaults start 4 uvicorn workers and 7 huey consumers
    (about 2 GB, up to a minute to answer on 2 cores) for GenAI jobs that training runs never use.
    """
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", tracking_uri]
    command += ["--host", UI_HOST, "--port", str(port), "--workers", "1"]
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    with open(log_path, "wb") as log:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            command,
            cwd=cwd,  # anything MLflow writes to "./" (mlartifacts/) lands in the experiment folder
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def wait_until_serving(url: str, server: subprocess.Popen[bytes], timeout_s: float) -> bool:
    """Poll `url` until it answers 200 (True), or the server exits or `timeout_s` passes (False)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: no http_proxy
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and server.poll() is None:
        try:
            with opener.open(url, timeout=2) as response:
                if response.status == 200:
                    return True
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.25)
    return False


def stop_ui_server(server: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's whole process group (it leaves a `_job_runner` or uvicorn child
    otherwise), then SIGKILL whatever is left after `STOP_TIMEOUT_S`."""
    if os.name != "posix":
        server.terminate()
        server.wait()
        return
    group = server.pid  # a session leader's process group id is its pid
    _signal_group(group, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while time.monotonic() < deadline:
        server.poll()  # reap the leader, or it lingers as a zombie in the group
        if not _group_alive(group):
            return
        time.sleep(0.1)
    _signal_group(group, signal.SIGKILL)
    server.wait()


def stop_on_signals() -> None:
    """SIGTERM or SIGHUP (terminal closed) stop the server like Ctrl-C: it runs in its own
    session, so nothing else would stop it."""

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    if os.name == "posix":
        signal.signal(signal.SIGTERM, interrupt)
        signal.signal(signal.SIGHUP, interrupt)


def log_tail(log_path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no output: {log_path} is unreadable)"


def _signal_group(group: int, signum: signal.Signals) -> None:
    try:
        os.killpg(group, signum)
    except ProcessLookupError:
        pass


def _group_alive(group: int) -> bool:
    """Whether any process of the group is still running (zombies left to init do not count)."""
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    if not os.path.isdir("/proc"):  # macOS: trust killpg alone
        return True
    return any(_in_group_and_running(int(pid), group) for pid in os.listdir("/proc") if pid.isdigit())


def _in_group_and_running(pid: int, group: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # Fields after the parenthesised command: state ppid pgrp ...
    state, _ppid, pgrp = stat.rsplit(")", 1)[1].split()[:3]
    return int(pgrp) == group and state != "Z"
