"""`rf ctl` with no `rf run` attached applies or refuses at once; with one attached it queues, and
refuses what can never apply. Runs in given states in a real store, fake checkpoints, no training."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from rfcli.cli.ctl import ctl_app
from rfcli.store.database import ExperimentStore
from rfcli.store.layout import STATE_DB, ExperimentLayout
from rfcli.store.lock import ExperimentLock

runner = CliRunner()


@pytest.fixture
def folder(tmp_path: Path, run_config: dict[str, Any]) -> Path:
    """Experiment 'sweep': run 1 ready after 2 chunks (step 20), run 2 completed, run 3 deleted."""
    folder = tmp_path / "sweep"
    with ExperimentStore(folder / STATE_DB) as store:
        for run_id in (1, 2, 3):
            store.add_run(run_id, run_config, f"fp{run_id}", name=str(run_id), cause="plan")
            store.set_plan_totals(run_id, total_chunks=4, max_steps=40)
            store.set_state(run_id, "running", cause="scheduler", worker=0)
            checkpoint = folder / "runs" / str(run_id) / "checkpoints" / "checkpoint-20"
            (checkpoint / f"run_{run_id}").mkdir(parents=True)
            (checkpoint / f"run_{run_id}" / "adapter_model.safetensors").write_bytes(b"weights")
            (checkpoint / "optimizer.pt").write_bytes(b"moments")
            store.record_chunk(run_id, chunks_done=2, global_step=20, checkpoint=str(checkpoint), metrics=[])
        store.set_state(1, "ready", cause="scheduler")
        store.set_state(2, "completed", cause="scheduler")
        store.set_state(3, "ready", cause="scheduler")
        store.set_state(3, "deleted", cause="rf ctl")
    return folder


@pytest.fixture
def attached(folder: Path) -> Iterator[None]:
    """A `rf run` holds the experiment (but applies nothing while the test runs)."""
    with ExperimentLock(ExperimentLayout(folder).lock_file, "rf run"):
        yield


def ctl(folder: Path, *args: str) -> Any:
    return runner.invoke(ctl_app, [*args, "--dir", str(folder.parent), "-e", folder.name])


def store_of(folder: Path) -> ExperimentStore:
    return ExperimentStore(folder / STATE_DB)


def test_stop_applies_at_once_and_leaves_mlflow_to_the_next_rf_run(folder: Path) -> None:
    result = ctl(folder, "stop", "1")
    assert (result.exit_code, result.output) == (0, "stop run 1: applied\n")
    with store_of(folder) as store:
        assert store.run(1).state == "stopped"
        [event] = [e for e in store.events(run_id=1) if e.kind == "stopped"]
        assert event.cause == "rf ctl"
        assert [(c.verb, c.run_id) for c in store.deferred_commands()] == [("stop", 1)]
        assert store.pending_commands() == []
    assert ExperimentLock(ExperimentLayout(folder).lock_file, "rf run").try_acquire(), (
        "rf ctl let the lock go"
    )


def test_delete_applies_at_once_and_a_second_delete_is_refused(folder: Path) -> None:
    assert ctl(folder, "delete", "2").exit_code == 0
    assert not (folder / "runs" / "2").exists()
    with store_of(folder) as store:
        assert store.run(2).state == "deleted"
    again = ctl(folder, "delete", "2")
    assert again.exit_code == 2
    assert again.output == "delete run 2: refused: run 2 is deleted; it can no longer be steered\n"


def test_a_warm_clone_applies_at_once_from_a_copy_of_the_checkpoint(folder: Path) -> None:
    result = ctl(folder, "clone", "1", "--warm", "training.max_steps=60", "training.learning_rate=1e-4")
    assert result.exit_code == 0, result.output
    assert result.output == (
        "clone run 1: applied: made run 4 (clone of 1 (warm) training.max_steps=60 "
        f"training.learning_rate=1e-4); `rf run -e sweep --dir {folder.parent}` trains it\n"
    )
    with store_of(folder) as store:
        clone = store.run(4)
    assert (clone.parent_id, clone.warm_start, clone.state, clone.global_step) == (1, True, "ready", 20)
    copied = folder / "runs" / "4" / "checkpoints" / "checkpoint-20"
    assert clone.checkpoint == str(copied)
    assert (copied / "run_4" / "adapter_model.safetensors").read_bytes() == b"weights"
    assert not (copied / "optimizer.pt").exists(), "a warm clone starts a fresh optimizer"
    assert clone.config["training"]["learning_rate"] == 1e-4


def test_a_clone_that_rf_run_applies_names_the_run_it_made(folder: Path, attached: None) -> None:
    from rfcli.engine.control import CommandApplier

    def controller() -> None:  # what the attached rf run does between chunks
        with store_of(folder) as store:
            while not store.has_run(4):
                CommandApplier(store, ExperimentLayout(folder), on_change=lambda *_: None).apply_pending(())
                time.sleep(0.05)

    applying = threading.Thread(target=controller)
    applying.start()
    result = ctl(folder, "clone", "2", "training.learning_rate=1e-4", "--wait", "10")
    applying.join()
    assert result.output == (
        "clone run 2: applied: made run 4 (clone of 2 training.learning_rate=1e-4); rf run trains it now\n"
    )


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["stop", "9"], "no run 9 in "),
        (["clone", "9"], "its runs are 1-3"),
        (["resume", "3"], "run 3 is deleted; it can no longer be steered"),
        (["clone", "3", "--warm"], "run 3 is deleted; a warm clone needs its weights"),
        (["stop", "2"], "run 2 is completed"),
        (["resume", "1"], "run 1 is ready; only a stopped run resumes"),
    ],
)
def test_what_cannot_apply_is_refused_with_exit_status_2(folder: Path, args: list[str], reason: str) -> None:
    result = ctl(folder, *args)
    assert result.exit_code == 2
    assert result.output.startswith(f"{args[0]} run {args[1]}: refused: ")
    assert reason in result.output and result.output.count("\n") == 1
    with store_of(folder) as store:
        assert store.run(1).state == "ready" and len(store.runs()) == 3


def test_with_rf_run_attached_commands_queue_and_a_second_delete_is_refused(
    folder: Path, attached: None
) -> None:
    first = ctl(folder, "delete", "1", "--wait", "0")
    assert first.exit_code == 0
    assert first.output == (  # run 1 is not training: nothing but rf run's next turn
        "delete run 1: queued; `rf run` applies it at its next turn; `rf status` shows its outcome\n"
    )
    for args in (["delete", "1"], ["stop", "1"], ["clone", "1", "--warm"]):
        refused = ctl(folder, *args, "--wait", "0")
        assert refused.exit_code == 2
        assert "run 1 is already waiting to be deleted" in refused.output
    with store_of(folder) as store:
        assert [(c.verb, c.run_id) for c in store.pending_commands()] == [("delete", 1)]
        assert store.run(1).state == "ready"


def test_a_command_left_pending_by_a_rf_run_that_ended_is_applied_by_the_next_rf_ctl(folder: Path) -> None:
    with ExperimentLock(ExperimentLayout(folder).lock_file, "rf run"):
        assert ctl(folder, "stop", "1", "--wait", "0").exit_code == 0
    assert ctl(folder, "delete", "2").exit_code == 0
    with store_of(folder) as store:
        assert (store.run(1).state, store.run(2).state) == ("stopped", "deleted")
        assert [(c.verb, c.run_id) for c in store.deferred_commands()] == [("stop", 1), ("delete", 2)]
