"""What a path is, in the words of an error line, and whether rf can make a folder there.

A path that is not what a command needs (a file given for a folder, a named pipe or a device given
for a file, a symbolic link to nothing) is named as what it is, not as missing. Standard library
only: `rf status` and `rf ls` use it.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

KINDS = ("a folder", "a file", "a named pipe", "a device", "a socket")


def what_is(path: Path) -> str | None:
    """'a folder', 'a file', 'a named pipe', 'a device', 'a socket', or 'a symbolic link to X, which
    does not exist'; None when nothing is there."""
    try:
        mode = path.stat().st_mode
    except (FileNotFoundError, NotADirectoryError):  # nothing there, or a file on the way
        if path.is_symlink():
            return f"a symbolic link to '{os.readlink(path)}', which does not exist"
        return None
    except OSError as error:  # a loop of links, a name too long, a folder rf may not enter
        return f"a path rf cannot look at ({error.strerror})"
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISREG(mode):
        return "a file"
    if stat.S_ISFIFO(mode):
        return "a named pipe"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a file or a folder"


def mistaken_kind(path: Path, wanted: str) -> str | None:
    """'is a named pipe, not a file' when something other than `wanted` ('a file', 'a folder') is
    at `path`; None when it is that, or when nothing is there."""
    what = what_is(path)
    if what is None or what == wanted:
        return None
    return f"is {what}, not {wanted}" if what in KINDS else f"is {what}"


def folder_problem(folder: Path) -> str | None:
    """Why `folder` cannot be made (or written, when it exists), or None when it can: the first
    path on the way that is not a folder, or the nearest folder that rf may not write into."""
    for step in (folder, *folder.absolute().parents):
        what = what_is(step)
        if what == "a folder":
            if not os.access(step, os.W_OK | os.X_OK):
                return f"{step} is a folder rf may not write into"
            return None
        if what is not None:
            return f"{step} {mistaken_kind(step, 'a folder')}"
    return None
