"""One controller per experiment: two `rf run` started at once train it once, and `rf ctl` on an
experiment no `rf run` holds applies or refuses its command at once."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from rfcli.store.database import ExperimentStore
from rfcli.tracking.mlflow_tracker import MlflowTracker, tracking_uri_for
from tests.e2e.conftest import RF_TIMEOUT_S, run_rf, sweep_config, write_yaml
from tests.e2e.test_control import start_rf

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def raced(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[tuple[int, str]]]:
    """Two runs of 8 steps in 4 chunks, `rf run` twice at the same moment: (config file, folder,
    [(exit status, output)])."""
    root = tmp_path_factory.mktemp("raced")
    config = sweep_config(root / "experiments", "raced")
    config["training"]["learning_rate"] = 1.0e-3
    config["training"]["max_steps"] = 8
    config["num_chunks"] = 4
    path = write_yaml(root / "raced.yaml", config)
    processes: list[subprocess.Popen[str]] = [start_rf("run", path), start_rf("run", path)]
    outcomes = []
    for process in processes:
        output, _ = process.communicate(timeout=RF_TIMEOUT_S)
        outcomes.append((process.returncode, output))
    return path, root / "experiments" / "raced", outcomes


def test_two_rf_run_at_once_train_each_run_once(raced: tuple[Path, Path, list[tuple[int, str]]]) -> None:
    _, folder, outcomes = raced
    assert sorted(code for code, _ in outcomes) == [0, 2], outcomes
    refused = next(output for code, output in outcomes if code == 2)
    assert refused.count("\n") == 1 and refused.startswith(
        "error: experiment 'raced' is held by `rf run` (pid "
    )
    assert "`rf status` and `rf ctl` work meanwhile" in refused
    with ExperimentStore(folder / "state.db") as store:
        runs = store.runs()
        events = store.events(limit=1000)
    assert [(run.id, run.state, run.chunks_done) for run in runs] == [
        (1, "completed", 4),
        (2, "completed", 4),
    ]
    for run in runs:
        kinds = [event.kind for event in events if event.run_id == run.id]
        assert kinds.count("running") == 4, f"run {run.id} trained each chunk once: {kinds}"
        assert kinds.count("completed") == 1, f"run {run.id} completed once: {kinds}"
        kept = sorted(
            path.name for path in (folder / "runs" / str(run.id) / "checkpoints").glob("checkpoint-*")
        )
        assert kept == ["checkpoint-6", "checkpoint-8"], "the last two chunk checkpoints"
        assert run.checkpoint is not None and run.checkpoint.endswith("checkpoint-8")
    assert [event.kind for event in events if event.run_id is None] == ["started"], "one controller"


def test_rf_ctl_without_rf_run_applies_at_once_and_the_next_rf_run_tells_mlflow(
    raced: tuple[Path, Path, list[tuple[int, str]]],
) -> None:
    path, folder, _ = raced
    ctl = ["--dir", str(folder.parent), "-e", "raced", "--wait", "0"]
    assert run_rf("ctl", "delete", "1", *ctl, expect=0).stdout == "delete run 1: applied\n"
    assert not (folder / "runs" / "1").exists()
    refused = run_rf("ctl", "delete", "1", *ctl, expect=2)
    assert refused.stderr == "delete run 1: refused: run 1 is deleted; it can no longer be steered\n"
    missing = run_rf("ctl", "stop", "7", *ctl, expect=2)
    assert "no run 7 in " in missing.stderr and "its runs are 1-2" in missing.stderr

    assert "nothing left to train" in run_rf("run", path, expect=0).stdout
    with ExperimentStore(folder / "state.db") as store:
        deleted = store.run(1)
        assert store.deferred_commands() == []
    assert deleted.mlflow_run_id is not None
    mlflow_run = MlflowTracker(tracking_uri_for(folder), "raced")._client.get_run(deleted.mlflow_run_id)  # noqa: SLF001
    assert mlflow_run.info.status == "KILLED"
    assert mlflow_run.data.tags["rf.state"] == "deleted"
    assert mlflow_run.data.tags["rf.delete_cause"] == "rf ctl"
