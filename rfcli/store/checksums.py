"""Checkpoint checksums: a checkpoint carries the size and SHA-256 of each of its files, written when it
becomes durable and checked before it is read, so a damaged checkpoint is named, not trained on.

    checkpoint-12/
        rf-checksums.json    {"files": {"run_3/adapter_model.safetensors": {"size": 8720, "sha256": "..."}}}

A run resumes from the newest intact checkpoint at or before the one the store records (`resume_point`):
a damaged one (truncated, overwritten, a file gone) is passed over for the one before it, which the
run's folder keeps for this (`layout.KEEP_CHECKPOINTS`), and the run trains the steps between again.
A checkpoint without checksums, written by an rf before them, is read unchecked.

Standard library only: `rf ctl` copies checkpoints for warm clones, and `rf export` reads them.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from rfcli.store.layout import checkpoint_step

CHECKSUMS = "rf-checksums.json"
READ_CHUNK = 1 << 20


@dataclass(frozen=True)
class Damage:
    """What is wrong with one file of a checkpoint (`file` empty: with the checkpoint itself)."""

    checkpoint: Path
    file: str
    problem: str

    def __str__(self) -> str:
        return f"{self.checkpoint / self.file if self.file else self.checkpoint} {self.problem}"


class DamagedCheckpoint(Exception):
    """No intact checkpoint to read; the message names each damaged file."""

    def __init__(self, damaged: list[Damage]) -> None:
        self.damaged = damaged
        super().__init__("; ".join(str(damage) for damage in damaged) + "; no intact checkpoint is left")


@dataclass(frozen=True)
class ResumePoint:
    checkpoint: str | None
    """The checkpoint to resume from (None: from the start)."""
    fresh_optimizer: bool = False
    """Resume its weights, step and RNG with a new optimizer and schedule: a retry changed the run's
    config after this checkpoint was saved."""
    passed_over: list[Damage] = field(default_factory=list)
    """Newer checkpoints found damaged, newest first."""

    def fallback_line(self, use: str = "resumes from") -> str:
        """What the run's event says when a damaged checkpoint was passed over."""
        assert self.checkpoint is not None
        used = Path(self.checkpoint)
        damaged = "; ".join(str(damage) for damage in self.passed_over)
        return f"{damaged}; {use} {used.name} (step {checkpoint_step(used)})"


def file_digest(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def write_checksums(folder: Path) -> None:
    """Record the size and SHA-256 of every file under `folder` (before it is made durable)."""
    files = {
        path.relative_to(folder).as_posix(): {"size": path.stat().st_size, "sha256": file_digest(path)}
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.name != CHECKSUMS
    }
    (folder / CHECKSUMS).write_text(json.dumps({"files": files}, indent=1), encoding="utf-8")


def recorded_checksums(folder: Path) -> dict[str, dict[str, object]] | None:
    """The checksums a checkpoint carries; None when it carries none (written before them)."""
    path = folder / CHECKSUMS
    if not path.exists():
        return None
    files = json.loads(path.read_text(encoding="utf-8"))["files"]
    if not isinstance(files, dict):
        raise ValueError("no file list")
    return files


def damage(folder: Path) -> Damage | None:
    """What is wrong with a checkpoint, or None when it is intact (or carries no checksums)."""
    if not folder.is_dir():
        return Damage(folder, "", "is missing")
    try:
        files = recorded_checksums(folder)
    except (OSError, ValueError, KeyError, TypeError):
        return Damage(folder, CHECKSUMS, "cannot be read")
    for name, expected in (files or {}).items():
        path = folder / name
        if not path.is_file():
            return Damage(folder, name, "is missing")
        size = path.stat().st_size
        if size != expected.get("size"):
            return Damage(folder, name, f"is {size:,} bytes where {expected.get('size'):,} were written")
        if file_digest(path) != expected.get("sha256"):
            return Damage(folder, name, "differs from what was written (its SHA-256 does not match)")
    return None


def resume_point(recorded: str | None, fresh_optimizer_step: int | None = None) -> ResumePoint:
    """The newest intact checkpoint at or before `recorded`: the run's last recorded chunk, or, when it
    is damaged, the one before it. Raises DamagedCheckpoint, naming every damaged file, when none is
    intact. `fresh_optimizer_step`: a checkpoint saved at that step or before resumes with a fresh
    optimizer (a retry with changes restarted the run from there)."""
    if recorded is None:
        return ResumePoint(None)
    newest = Path(recorded)
    limit = checkpoint_step(newest)
    earlier = sorted(
        (
            (step, folder)
            for folder in (newest.parent.iterdir() if newest.parent.is_dir() else [])
            if (step := checkpoint_step(folder)) is not None and limit is not None and step < limit
        ),
        reverse=True,
    )
    passed_over: list[Damage] = []
    for candidate in [newest, *(folder for _, folder in earlier)]:
        problem = damage(candidate)
        if problem is None:
            step = checkpoint_step(candidate)
            fresh = fresh_optimizer_step is not None and step is not None and step <= fresh_optimizer_step
            return ResumePoint(str(candidate), fresh, passed_over)
        passed_over.append(problem)
    raise DamagedCheckpoint(passed_over)


def copy_checkpoint(source: Path, target: Path, leave_out: tuple[str, ...], renamed: tuple[str, str]) -> None:
    """Copy an intact checkpoint without the files named in `leave_out`, its folder `renamed[0]`
    renamed to `renamed[1]`, with checksums that say so. Raises DamagedCheckpoint for a damaged one."""
    problem = damage(source)
    if problem is not None:
        raise DamagedCheckpoint([problem])
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(source, target, ignore=shutil.ignore_patterns(*leave_out))
    old, new = renamed
    if (target / old).is_dir():
        (target / old).rename(target / new)
    files = recorded_checksums(source)
    if files is not None:
        kept = {
            (new + name[len(old) :] if name.startswith(f"{old}/") else name): expected
            for name, expected in files.items()
            if Path(name).name not in leave_out
        }
        (target / CHECKSUMS).write_text(json.dumps({"files": kept}, indent=1), encoding="utf-8")
