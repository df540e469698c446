"""Failures of the machine, not of a run: a full disk, a disk quota, a read-only folder.

Such a failure says nothing about the run's settings, so it must not fail the run: `rf run` pauses the
experiment with one line that says what the machine lacks, and the next `rf run` continues every run
from its last recorded chunk. Libraries report them in their own words: Python as an `OSError`
with its errno, SQLite as "database or disk is full", safetensors in its message, and torch's
checkpoint writer with no trace of the cause at all ("unexpected pos 576 vs 534"), so a write that
fails while the folder's file system is out of space counts as one too.

Standard library only: the command line asks it of any error before printing a traceback.
"""

from __future__ import annotations

import errno
import shutil
from collections.abc import Iterator
from pathlib import Path

PAUSED_EXIT = 75
"""`rf run`'s exit status when the machine paused it: EX_TEMPFAIL, a failure worth trying again."""
NEARLY_FULL_BYTES = 16 << 20
"""Less free space than this on the experiment's file system: a failed write is the disk's fault."""

_BY_ERRNO = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
}
_BY_TEXT = {
    "No space left on device": "no space left on device",
    "database or disk is full": "no space left on device",
    "Disk quota exceeded": "disk quota exceeded",
    "Read-only file system": "read-only file system",
}


def machine_fault(error: BaseException, folder: Path | None = None) -> str | None:
    """What the machine lacks, in one line, when `error` (or an error that led to it) is a failure of
    the machine; None for anything else. With `folder`, any error counts when its file system has
    less than `NEARLY_FULL_BYTES` free."""
    for cause in _chain(error):
        if isinstance(cause, OSError) and cause.errno in _BY_ERRNO:
            where = f" ({cause.filename})" if cause.filename else ""
            return f"{_BY_ERRNO[cause.errno]}{where}"
        text = str(cause)
        for needle, what in _BY_TEXT.items():
            if needle in text:
                return what
    if folder is not None and (free := free_bytes(folder)) is not None and free < NEARLY_FULL_BYTES:
        return f"no space left on device ({free:,} bytes free under {folder})"
    return None


def free_bytes(folder: Path) -> int | None:
    """Free bytes on the file system that holds `folder` (or its nearest existing parent)."""
    path = Path(folder)
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return None


def _chain(error: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def describe_pause(fault: str) -> str:
    """The line `rf run` ends with when the machine paused the experiment."""
    return (
        f"paused: {fault}; no run failed. Free the space (or fix the folder) and run `rf run` again: "
        "every run continues from its last recorded chunk"
    )
