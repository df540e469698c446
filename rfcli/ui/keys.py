"""Key presses from the terminal, read on a thread while the live table redraws.

The terminal goes into cbreak mode (keys arrive one by one, unechoed) and is restored on exit;
without a terminal on stdin there are no keys, and `rf run` just trains.
"""

from __future__ import annotations

import os
import queue
import sys
import termios
import threading
import tty
from types import TracebackType
from typing import Any

from rfcli.ui.steering import BACKSPACE, DOWN, ENTER, ESCAPE, UP

SEQUENCES = {b"\x1b[A": UP, b"\x1bOA": UP, b"\x1b[B": DOWN, b"\x1bOB": DOWN}
SINGLE = {b"\r": ENTER, b"\n": ENTER, b"\x7f": BACKSPACE, b"\x08": BACKSPACE, b"\x1b": ESCAPE}


def decode(data: bytes) -> list[str]:
    """Bytes from the terminal -> key names ('up', 'enter', ...) or single characters."""
    keys: list[str] = []
    while data:
        sequence = next((s for s in SEQUENCES if data.startswith(s)), None)
        if sequence is not None:
            keys.append(SEQUENCES[sequence])
            data = data[len(sequence) :]
            continue
        head, data = data[:1], data[1:]
        keys.append(SINGLE.get(head) or head.decode(errors="replace"))
    return keys


class KeyReader:
    def __init__(self) -> None:
        self._keys: queue.Queue[str] = queue.Queue()
        self._saved: list[Any] | None = None
        self._fd = sys.stdin.fileno() if sys.stdin is not None and sys.stdin.isatty() else None

    @property
    def active(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> KeyReader:
        if self._fd is not None:
            self._saved = termios.tcgetattr(self._fd)
            tty.setcbreak(self._fd)
            threading.Thread(target=self._read, name="rf-keys", daemon=True).start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self._fd is not None and self._saved is not None:
            termios.tcsetattr(self._fd, termios.TCSADRAIN, self._saved)

    def pressed(self) -> list[str]:
        """Every key pressed since the last call."""
        keys = []
        while not self._keys.empty():
            keys.append(self._keys.get_nowait())
        return keys

    def _read(self) -> None:
        assert self._fd is not None
        while True:
            data = os.read(self._fd, 64)
            if not data:
                return
            for key in decode(data):
                self._keys.put(key)
