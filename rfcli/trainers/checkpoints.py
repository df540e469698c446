"""Chunk checkpoints written while the next run trains, counted only once they are durable.

At a chunk boundary the run saves its RNG state first (the runs of a worker share the process-wide
generators, and the next run starts drawing from them at once), then hands the rest of the
checkpoint to `handoff` as one call: the session runs it on a writer thread while the worker
trains the next run. It writes into a staging folder, records the checksum of each file
(`store/checksums.py`, checked before the checkpoint is read), fsyncs it and renames it into place.
The run's weights and optimizer do not change while it waits for its next turn, so the write needs
no copy of them. A kill at any moment leaves the previous checkpoint and at most a staging folder
that nothing reads; the chunk is recorded only after the rename, so it trains again.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from transformers import Trainer
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from rfcli.store.checksums import write_checksums

STAGING_FOLDER = ".staging"
"""Inside a run's checkpoints folder: checkpoints being written, renamed out of it once durable."""


class BackgroundCheckpoints(Trainer):
    handoff: Callable[[Callable[[], None]], None] | None = None
    """Set by the run's session: called once the chunk is trained, evaluated and its RNG state saved,
    with the call that writes the rest of the checkpoint (the session decides where and when)."""

    fresh_optimizer = False
    """Set by the worker when the run resumes from a checkpoint saved before a retry changed its
    config: its weights, step and RNG are loaded, its optimizer and schedule start afresh."""

    _staging = False

    def _get_output_dir(self, trial: Any) -> str:
        run_dir = super()._get_output_dir(trial)
        return os.path.join(run_dir, STAGING_FOLDER) if self._staging else run_dir

    def _save_checkpoint(self, model: Any, trial: Any) -> None:
        name = f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
        final = Path(super()._get_output_dir(trial)) / name
        staging = final.parent / STAGING_FOLDER / name
        shutil.rmtree(staging, ignore_errors=True)  # left by a kill during an earlier write
        Trainer._save_rng_state(self, str(staging))
        write = partial(self._write_checkpoint, model, trial, staging, final)
        if self.handoff is None:
            write()
        else:
            self.handoff(write)

    def _write_checkpoint(self, model: Any, trial: Any, staging: Path, final: Path) -> None:
        """The Trainer's own checkpoint, written into `staging`, made durable, renamed to `final`."""
        self._staging = True
        try:
            super()._save_checkpoint(model, trial)
            write_checksums(staging)
            make_durable(staging)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)  # on a full disk, what it wrote is space again
            raise
        finally:
            self._staging = False
        if final.exists():  # written by a run killed before the store recorded it: never read
            shutil.rmtree(final)
        os.rename(staging, final)
        fsync_path(final.parent)

    def _save_rng_state(self, output_dir: str) -> None:
        """Saved by `_save_checkpoint` before the handoff, while the generators are still the run's."""

    def _load_optimizer_and_scheduler(self, checkpoint: str | None) -> None:
        if not self.fresh_optimizer:
            super()._load_optimizer_and_scheduler(checkpoint)


def make_durable(folder: Path) -> None:
    """fsync every file and folder under `folder`, and the folder itself."""
    for path in folder.rglob("*"):
        fsync_path(path)
    fsync_path(folder)


def fsync_path(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
