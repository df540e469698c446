"""Whether a file is a whole SQLite database, read from its 100-byte header in microseconds: an
empty file, one that is not SQLite, or one cut short (a copy interrupted, a disk filled) is named
before anything opens it. SQLite itself would make an empty file into a fresh database, and would
only find a truncated one's missing pages when a read reaches them.

Standard library only: `rf status` and `rf ls` use it.
"""

from __future__ import annotations

from pathlib import Path

HEADER = b"SQLite format 3\x00"
HEADER_SIZE = 100


def sqlite_file_problem(path: Path) -> str | None:
    """What is wrong with the database file at `path` ('is empty (0 bytes)', 'is not an SQLite
    database', 'is cut short: ...'), or None when its header and size agree."""
    try:
        size = path.stat().st_size
        with path.open("rb") as file:
            header = file.read(HEADER_SIZE)
    except OSError as error:
        return f"cannot be read ({error.strerror})"
    if size == 0:
        return "is empty (0 bytes)"
    if not header.startswith(HEADER):
        return "is not an SQLite database"
    if len(header) < HEADER_SIZE:
        return f"is cut short: {size} bytes, less than an SQLite header"
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(header[28:32], "big")
    counted = header[24:28] == header[92:96]  # the header's page count is kept up to date
    if counted and size < pages * page_size:
        return f"is cut short: {size:,} bytes of the {pages * page_size:,} its header gives"
    return None
