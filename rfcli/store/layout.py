"""Where each thing of an experiment lives in its folder: the one module that names them.

    <experiments dir>/<name>/
        state.db             the state store (SQLite: runs, metrics, events, commands)
        mlflow.db            the MLflow tracking store, unless `tracking_uri` names another
        tracking_uri         that other tracking URI, when there is one
        controller.lock      held by the `rf run` (or the `rf ctl`) that steers the experiment
        reference-logps/     DPO reference log-probs, shared by the runs that match
        runs/<id>/checkpoints/checkpoint-<step>/
                             a run's chunk checkpoints; with LoRA the adapter is in `run_<id>/`

Standard library only: `rf status` and `rf ctl` use it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

STATE_DB = "state.db"


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

    def run_folder(self, run_id: int) -> Path:
        return self.folder / "runs" / str(run_id)

    def checkpoints(self, run_id: int) -> Path:
        """The folder the run's Trainer writes its chunk checkpoints into (its `output_dir`)."""
        return self.run_folder(run_id) / "checkpoints"


def adapter_name(run_id: int) -> str:
    """The run's LoRA adapter: its name on the shared base model and its folder in a checkpoint."""
    return f"run_{run_id}"
