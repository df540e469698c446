"""The controller's record of a finished chunk, without workers: what stays on disk after it."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from rfcli.engine.controller import Controller
from rfcli.engine.messages import ChunkDone
from rfcli.store.database import ExperimentStore
from rfcli.store.layout import ExperimentLayout


def test_a_run_keeps_its_last_two_checkpoints_and_never_the_one_the_store_points_to_is_removed(
    tmp_path: Path,
) -> None:
    layout = ExperimentLayout(tmp_path)
    store = ExperimentStore(layout.state_db)
    store.add_run(1, {"training": {}}, "fp1", name="1", cause="plan")
    pool = SimpleNamespace(experiment=tmp_path, workers=[])
    controller = Controller(store, tracker=None, pool=pool, announce=lambda line: None)  # type: ignore[arg-type]
    kept = []
    for chunk, step in enumerate((5, 10, 15, 20), start=1):
        checkpoint = layout.checkpoints(1) / f"checkpoint-{step}"
        (checkpoint / "run_1").mkdir(parents=True)
        store.set_state(1, "running", cause="scheduler", worker=0)
        done = ChunkDone(0, 1, chunk, 4, step, 20, str(checkpoint), step == 20, 1.0, 0.0, 0.1)
        controller.record(done)
        assert store.run(1).checkpoint == str(checkpoint) and checkpoint.is_dir()
        kept.append(sorted(path.name for path in layout.checkpoints(1).iterdir()))
    assert kept == [
        ["checkpoint-5"],
        ["checkpoint-10", "checkpoint-5"],
        ["checkpoint-10", "checkpoint-15"],
        ["checkpoint-15", "checkpoint-20"],
    ]
    store.close()
