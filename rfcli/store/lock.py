"""One controller per experiment: an advisory lock on a file in the experiment's folder.

`rf run` holds it while it trains; `rf ctl` holds it for the moment it applies a command when no
`rf run` is attached. An `fcntl.flock` lock belongs to the open file, so it ends with the process
that holds it (a `kill -9` included) and never needs clearing. The holder writes who it is into
the file, for the message that refuses a second `rf run`.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType

from rfcli.errors import UserError

CTL_HOLD_WAIT_S = 10.0
"""How long `rf run` waits for a `rf ctl` that holds the lock: it holds it for one command only."""
POLL_S = 0.05


@dataclass(frozen=True)
class Holder:
    command: str
    """'rf run' or 'rf ctl'."""
    pid: int
    host: str
    since: float

    def describe(self) -> str:
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.since))
        return f"`{self.command}` (pid {self.pid} on {self.host}, since {started})"


class ExperimentBusy(UserError):
    """Another process holds the experiment; the message says who, and what works meanwhile."""

    def __init__(self, folder: Path, holder: Holder | None) -> None:
        who = holder.describe() if holder is not None else "another process"
        super().__init__(
            f"experiment '{folder.name}' is held by {who}; one `rf run` trains an experiment at a time. "
            "`rf status` and `rf ctl` work meanwhile"
        )


class ExperimentLock:
    def __init__(self, path: Path, command: str) -> None:
        self.path = Path(path)
        self.command = command
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def try_acquire(self) -> bool:
        """Take the lock if no other process holds it; True when this process holds it now."""
        if self._fd is not None:
            return True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        me = Holder(self.command, os.getpid(), socket.gethostname(), time.time())
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(asdict(me)).encode(), 0)
        self._fd = fd
        return True

    def acquire(self) -> None:
        """Take the lock, waiting out a `rf ctl` that is applying a command; raises ExperimentBusy
        at once when another `rf run` holds it."""
        deadline = time.monotonic() + CTL_HOLD_WAIT_S
        while not self.try_acquire():
            holder = self.holder()
            # No holder written yet: it took the lock a moment ago and is writing its name.
            if (holder is not None and holder.command != "rf ctl") or time.monotonic() > deadline:
                raise ExperimentBusy(self.path.parent, holder)
            time.sleep(POLL_S)

    def holder(self) -> Holder | None:
        """Who holds the lock, as it wrote itself into the file; asked after `try_acquire` failed.
        None while the holder has not written itself yet (the file still names an ended process)."""
        holder = _read_holder(self.path)
        if holder is None or (holder.host == socket.gethostname() and not _alive(holder.pid)):
            return None
        return holder

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> ExperimentLock:
        self.acquire()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.release()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, under another user
        return True
    return True


def _read_holder(path: Path) -> Holder | None:
    try:
        return Holder(**json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return None
