"""The experiment folder's layout, and which chunk checkpoints a run keeps."""

from __future__ import annotations

from pathlib import Path

from rfcli.store.layout import ExperimentLayout, adapter_name, checkpoint_step, stale_checkpoints

RUN = Path("exp/runs/3/checkpoints")


def test_every_path_of_an_experiment_is_under_its_folder() -> None:
    layout = ExperimentLayout(Path("rf-experiments/sweep"))
    assert layout.state_db == Path("rf-experiments/sweep/state.db")
    assert layout.mlflow_db == Path("rf-experiments/sweep/mlflow.db")
    assert layout.lock_file == Path("rf-experiments/sweep/controller.lock")
    assert layout.reference_logps == Path("rf-experiments/sweep/reference-logps")
    assert layout.checkpoints(3) == Path("rf-experiments/sweep/runs/3/checkpoints")
    assert adapter_name(3) == "run_3"


def test_checkpoint_step_reads_the_trainers_folder_names() -> None:
    assert checkpoint_step(RUN / "checkpoint-120") == 120
    assert checkpoint_step(RUN / "checkpoint-final") is None
    assert checkpoint_step(RUN / "runs") is None


def test_the_two_latest_up_to_the_recorded_one_stay() -> None:
    folders = [RUN / f"checkpoint-{step}" for step in (40, 10, 30, 20)]
    assert stale_checkpoints(folders, RUN / "checkpoint-40") == [RUN / "checkpoint-10", RUN / "checkpoint-20"]
    assert stale_checkpoints(folders[:2], RUN / "checkpoint-40") == []


def test_a_checkpoint_after_the_recorded_one_stays_and_does_not_count() -> None:
    """Saved before a kill but never recorded: the store still points to the one before it."""
    folders = [RUN / f"checkpoint-{step}" for step in (10, 20, 30, 40)]
    assert stale_checkpoints(folders, RUN / "checkpoint-30") == [RUN / "checkpoint-10"]


def test_other_folders_are_left_alone() -> None:
    folders = [RUN / "checkpoint-10", RUN / "checkpoint-20", RUN / "checkpoint-30", RUN / "notes"]
    assert stale_checkpoints(folders, RUN / "checkpoint-30") == [RUN / "checkpoint-10"]
    assert stale_checkpoints(folders, RUN / "elsewhere") == []
