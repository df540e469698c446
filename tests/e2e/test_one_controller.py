"""One controller per experiment: two `rf run` started at once train it once, and `rf ctl` on an
experiment no `rf run` holds applies or refuses its command at once."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from rfcli.store.database import ExperimentStore
from tests.e2e.conftest import RF_TIMEOUT_S, sweep_config, write_yaml
from tests.e2e.test_control import start_rf

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def raced(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[tuple[int, str]]]:
    """Two runs of 8 steps in 2 chunks, `rf run` twice at the same moment: (folder, [(exit, output)])."""
    root = tmp_path_factory.mktemp("raced")
    config = sweep_config(root / "experiments", "raced")
    config["training"]["learning_rate"] = 1.0e-3
    config["training"]["max_steps"] = 8
    config["num_chunks"] = 2
    path = write_yaml(root / "raced.yaml", config)
    processes: list[subprocess.Popen[str]] = [start_rf("run", path), start_rf("run", path)]
    outcomes = []
    for process in processes:
        output, _ = process.communicate(timeout=RF_TIMEOUT_S)
        outcomes.append((process.returncode, output))
    return root / "experiments" / "raced", outcomes


def test_two_rf_run_at_once_train_each_run_once(raced: tuple[Path, list[tuple[int, str]]]) -> None:
    folder, outcomes = raced
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
        (1, "completed", 2),
        (2, "completed", 2),
    ]
    for run in runs:
        kinds = [event.kind for event in events if event.run_id == run.id]
        assert kinds.count("running") == 2, f"run {run.id} trained each chunk once: {kinds}"
        assert kinds.count("completed") == 1, f"run {run.id} completed once: {kinds}"
    assert [event.kind for event in events if event.run_id is None] == ["started"], "one controller"
