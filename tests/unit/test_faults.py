"""Failures of the machine told from failures of a run (`engine/faults.py`): as each library reports
them, injected, and for real on a small full file system where this machine lets a test mount one."""

from __future__ import annotations

import errno
import os
import shutil
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from rfcli.engine.faults import NEARLY_FULL_BYTES, machine_fault


def os_error(code: int, filename: str | None = None) -> OSError:
    return OSError(code, os.strerror(code), filename)


@pytest.mark.parametrize(
    ("error", "fault"),
    [
        (os_error(errno.ENOSPC, "/x/optimizer.pt"), "no space left on device (/x/optimizer.pt)"),
        (os_error(errno.EDQUOT), "disk quota exceeded"),
        (os_error(errno.EROFS, "/x"), "read-only file system (/x)"),
        (sqlite3.OperationalError("database or disk is full"), "no space left on device"),
        (  # safetensors says so in its message only
            RuntimeError("Error while serializing: I/O error: No space left on device (os error 28)"),
            "no space left on device",
        ),
        (ValueError("learning rate must be positive"), None),
        (os_error(errno.ENOENT, "/x/data.jsonl"), None),
    ],
)
def test_each_library_s_words_for_a_full_disk(error: BaseException, fault: str | None) -> None:
    assert machine_fault(error) == fault


def test_the_cause_of_an_error_counts() -> None:
    try:
        try:
            raise os_error(errno.ENOSPC)
        except OSError as full:
            raise RuntimeError("could not save the checkpoint") from full
    except RuntimeError as error:
        assert machine_fault(error) == "no space left on device"


def test_a_write_failing_while_the_folder_is_nearly_full_is_the_disk_s_fault(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """torch's checkpoint writer names no cause at all."""
    torch_words = RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534")
    free = {"bytes": NEARLY_FULL_BYTES}
    monkeypatch.setattr(shutil, "disk_usage", lambda path: SimpleNamespace(free=free["bytes"]))
    assert machine_fault(torch_words, tmp_path) is None
    free["bytes"] = 4096
    assert machine_fault(torch_words, tmp_path / "not yet made") == (
        f"no space left on device (4,096 bytes free under {tmp_path / 'not yet made'})"
    )
    assert machine_fault(torch_words) is None  # without a folder, only the error's own words count


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB file system, filled but for a few KiB; skipped where the test may not mount one."""
    folder = tmp_path / "small"
    folder.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(folder)], capture_output=True, check=False
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small file system here: {mounted.stderr.decode().strip()}")
    try:
        with (folder / "filler").open("wb") as filler:
            try:
                while True:
                    filler.write(bytes(64 << 10))
                    filler.flush()
            except OSError:
                pass
        (folder / "filler").write_bytes((folder / "filler").read_bytes()[: -(16 << 10)])
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def torch_save(folder: Path) -> None:
    import torch

    torch.save({"moments": torch.zeros(1 << 18)}, folder / "optimizer.pt")


def safetensors_save(folder: Path) -> None:
    import torch
    from safetensors.torch import save_file

    save_file({"weight": torch.zeros(1 << 18)}, folder / "adapter_model.safetensors")


def sqlite_write(folder: Path) -> None:
    with sqlite3.connect(folder / "state.db") as db:
        db.execute("CREATE TABLE metrics (value BLOB)")
        for _ in range(100):
            db.execute("INSERT INTO metrics VALUES (?)", (bytes(10_000),))


def python_write(folder: Path) -> None:
    (folder / "trainer_state.json").write_bytes(bytes(1 << 20))


@pytest.mark.parametrize("write", [torch_save, safetensors_save, sqlite_write, python_write])
def test_each_write_on_a_real_full_disk_is_the_machine_s_fault(
    full_disk: Path, write: Callable[[Path], Any]
) -> None:
    with pytest.raises(Exception) as failed:  # noqa: PT011 - each library raises its own kind
        write(full_disk)
    assert machine_fault(failed.value, full_disk) is not None, repr(failed.value)


def test_any_command_meeting_a_full_disk_prints_one_line_and_exits_75(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from rfcli.cli.app import main
    from rfcli.store.database import ExperimentStore
    from rfcli.store.experiments import STATE_DB, experiment_folder

    ExperimentStore(experiment_folder(tmp_path, "sweep") / STATE_DB).close()

    def full(self: ExperimentStore, path: Path, create: bool = True) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(ExperimentStore, "__init__", full)
    with pytest.raises(SystemExit) as exited:
        main(["ctl", "stop", "1", "-e", "sweep", "--dir", str(tmp_path)])
    assert exited.value.code == 75
    assert capsys.readouterr().err == "error: no space left on device\n"
