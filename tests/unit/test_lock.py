"""The experiment lock: one holder at a time, who it is, and gone with its process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from rfcli.store.lock import ExperimentBusy, ExperimentLock


def test_a_second_holder_is_refused_with_who_holds_it(tmp_path: Path) -> None:
    first = ExperimentLock(tmp_path / "controller.lock", "rf run")
    first.acquire()
    second = ExperimentLock(tmp_path / "controller.lock", "rf run")
    with pytest.raises(ExperimentBusy) as refused:
        second.acquire()
    message = str(refused.value)
    assert f"`rf run` (pid {os.getpid()} on " in message
    assert f"experiment '{tmp_path.name}'" in message
    assert "`rf status` and `rf ctl` work meanwhile" in message
    assert not second.held
    first.release()
    second.acquire()
    assert second.held
    second.release()


def test_try_acquire_does_not_wait(tmp_path: Path) -> None:
    with ExperimentLock(tmp_path / "controller.lock", "rf run"):
        other = ExperimentLock(tmp_path / "controller.lock", "rf ctl")
        assert not other.try_acquire()
        holder = other.holder()
        assert holder is not None and holder.command == "rf run" and holder.pid == os.getpid()
    assert other.try_acquire()
    other.release()


def test_rf_run_waits_out_a_rf_ctl_applying_a_command(tmp_path: Path) -> None:
    ctl = ExperimentLock(tmp_path / "controller.lock", "rf ctl")
    ctl.acquire()
    threading.Timer(0.3, ctl.release).start()
    run = ExperimentLock(tmp_path / "controller.lock", "rf run")
    run.acquire()
    assert run.held
    run.release()


def test_the_lock_dies_with_its_process(tmp_path: Path) -> None:
    path = tmp_path / "controller.lock"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from rfcli.store.lock import ExperimentLock; "
            f"ExperimentLock({str(path)!r}, 'rf run').acquire(); print('held', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    lock = ExperimentLock(path, "rf run")
    with pytest.raises(ExperimentBusy, match=f"pid {holder.pid} "):
        lock.acquire()
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=10)
    assert lock.holder() is None, "a holder that has ended holds nothing"
    lock.acquire()
    lock.release()


def test_a_holder_is_read_only_when_written_and_alive(tmp_path: Path) -> None:
    path = tmp_path / "controller.lock"
    path.write_text('{"command": "rf run", "pid": 999999999, "host": "elsewhere", "since": 0}')
    assert ExperimentLock(path, "rf ctl").holder() is not None  # another host: trusted as written
    path.write_text("")
    assert ExperimentLock(path, "rf ctl").holder() is None
