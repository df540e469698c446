"""Where each thing of an experiment lives in its folder: the one module that names them.

    <experiments dir>/<name>/
        state.db             the state store (SQLite: runs, metrics, events, commands)
        mlflow.db            the MLflow tracking store, unless `tracking_uri` names another
        tracking_uri         that other tracking URI, when there is one
        controller.lock      held by the `rf run` (or the `rf ctl`) that steers the experiment
        reference-logps/     DPO reference log-probs, shared by the runs that match
        runs/<id>/checkpoints/checkpoint-<step>/
                             a run's last two chunk checkpoints; with LoRA its adapter is in
                             `run_<id>/`; `rf-checksums.json` checks its files (`checksums.py`)

Standard library only: `rf status` and `rf ctl` use it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

STATE_DB = "state.db"
KEEP_CHECKPOINTS = 2
"""Chunk checkpoints kept per run: the one the store points to, and the one before, in case."""
CHECKPOINT = re.compile(r"checkpoint-(\d+)")
"""A chunk checkpoint's folder name, as the Trainer writes it: the global step it was saved at."""


@dataclass(frozen=True)
class ExperimentLayout:
    folder: Path

    @property
    def state_db(self) -> Path:
        return self.folder / STATE_DB

    @property
    def mlflow_db(self) -> Path:
        return self.folder / "mlflow.db"

    @property
    def tracking_uri_file(self) -> Path:
        return self.folder / "tracking_uri"

    @property
    def lock_file(self) -> Path:
        return self.folder / "controller.lock"

    @property
    def reference_logps(self) -> Path:
        return self.folder / "reference-logps"

    @property
    def runs(self) -> Path:
        return self.folder / "runs"

    def run_folder(self, run_id: int) -> Path:
        return self.runs / str(run_id)

    def checkpoints(self, run_id: int) -> Path:
        """The folder the run's Trainer writes its chunk checkpoints into (its `output_dir`)."""
        return self.run_folder(run_id) / "checkpoints"


def adapter_name(run_id: int) -> str:
    """The run's LoRA adapter: its name on the shared base model and its folder in a checkpoint."""
    return f"run_{run_id}"


def stale_checkpoints(folders: Iterable[Path], recorded: Path, keep: int = KEEP_CHECKPOINTS) -> list[Path]:
    """The checkpoints of a run to remove once the store records `recorded`: all but the `keep`
    latest up to it. Later ones (saved, but not recorded before a kill) stay: that chunk is
    trained again and saved over them. Anything that is not a checkpoint is left alone."""
    limit = checkpoint_step(recorded)
    if limit is None:
        return []
    older = [(step, folder) for folder in folders if (step := checkpoint_step(folder)) is not None]
    kept = sorted((item for item in older if item[0] <= limit), reverse=True)
    return [folder for _, folder in sorted(kept[keep:])]


def checkpoint_step(folder: Path) -> int | None:
    """The global step a checkpoint folder was saved at; None for a folder that is not one."""
    match = CHECKPOINT.fullmatch(folder.name)
    return int(match.group(1)) if match else None
