"""Command handling in `engine/control.py`, without training: a store with runs in given states,
fake checkpoint folders, no workers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from rfcli.engine.control import CommandApplier, mirror_deferred
from rfcli.store.database import ExperimentStore
from rfcli.store.layout import ExperimentLayout

CONFIG: dict[str, Any] = {"trainer": "sft", "training": {"learning_rate": 1e-3, "max_steps": 40}}


class Experiment:
    """A store with runs, and a record of what the applier told the controller."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.store = ExperimentStore(folder / "state.db")
        self.changes: list[tuple[int, str, str]] = []
        self.applier = CommandApplier(
            self.store,
            ExperimentLayout(folder),
            lambda run, verb, cause: self.changes.append((run.id, verb, cause)),
        )

    def add_run(self, run_id: int, state: str = "pending", chunks: int = 0) -> None:
        self.store.add_run(run_id, CONFIG, f"fp{run_id}", name=str(run_id), cause="plan")
        if chunks:
            checkpoint = self.folder / "runs" / str(run_id) / "checkpoints" / f"checkpoint-{chunks * 10}"
            (checkpoint / f"run_{run_id}").mkdir(parents=True)
            (checkpoint / f"run_{run_id}" / "adapter_model.safetensors").write_bytes(b"weights")
            (checkpoint / "optimizer.pt").write_bytes(b"moments")
            self.store.record_chunk(
                run_id, chunks_done=chunks, global_step=chunks * 10, checkpoint=str(checkpoint), metrics=[]
            )
        if state != "pending":
            self.store.set_state(
                run_id, "running" if state in ("completed", "failed") else state, cause="test"
            )
        if state in ("completed", "failed"):
            self.store.set_state(run_id, state, cause="test")

    def command(self, verb: str, run_id: int, **args: Any) -> int:
        if verb == "clone":
            args = {"config": CONFIG, "overrides": [], "warm": False, **args}
        return self.store.add_command(verb, run_id, args, cause="rf ctl")

    def apply(self, busy: tuple[int, ...] = ()) -> list[str]:
        return self.applier.apply_pending(busy=busy)


@pytest.fixture
def experiment(tmp_path: Path):
    opened = Experiment(tmp_path)
    yield opened
    opened.store.close()


# -- exactly once ------------------------------------------------------------------------------


def fail_when_marked_applied(monkeypatch: pytest.MonkeyPatch) -> None:
    """A kill after a command's effect, before its 'applied' mark."""
    original = ExperimentStore.finish_command

    def finish(self: ExperimentStore, command_id: int, *, outcome: str, error: str | None = None) -> None:
        if outcome == "applied":
            raise KeyboardInterrupt("killed")
        original(self, command_id, outcome=outcome, error=error)

    monkeypatch.setattr(ExperimentStore, "finish_command", finish)


@pytest.mark.parametrize("warm", [False, True])
def test_a_clone_interrupted_before_its_mark_becomes_one_run_when_applied_again(
    experiment: Experiment, monkeypatch: pytest.MonkeyPatch, warm: bool
) -> None:
    experiment.add_run(1, "ready", chunks=2)
    command_id = experiment.command("clone", 1, warm=warm, config={**CONFIG, "training": {"max_steps": 80}})
    with monkeypatch.context() as patched:
        fail_when_marked_applied(patched)
        with pytest.raises(KeyboardInterrupt):
            experiment.apply()
    assert [run.id for run in experiment.store.runs()] == [1], "nothing of the clone was committed"
    assert experiment.store.command(command_id).pending

    assert experiment.apply() == ["run 2: cloned from run 1" + (" with its current weights" if warm else "")]
    assert [run.id for run in experiment.store.runs()] == [1, 2]
    assert experiment.store.command(command_id).outcome == "applied"
    assert experiment.apply() == []
    assert len(experiment.store.runs()) == 2
    clone = experiment.store.run(2)
    assert (clone.state, clone.global_step) == (("ready", 20) if warm else ("pending", 0))


def test_a_delete_interrupted_before_its_mark_keeps_the_run_and_its_checkpoints(
    experiment: Experiment, monkeypatch: pytest.MonkeyPatch
) -> None:
    experiment.add_run(1, "ready", chunks=1)
    experiment.command("delete", 1)
    with monkeypatch.context() as patched:
        fail_when_marked_applied(patched)
        with pytest.raises(KeyboardInterrupt):
            experiment.apply()
    assert experiment.store.run(1).state == "ready"
    assert (experiment.folder / "runs" / "1").is_dir()
    assert experiment.apply() == ["run 1: deleted, checkpoints removed"]
    assert experiment.store.run(1).state == "deleted"
    assert not (experiment.folder / "runs" / "1").exists()
    deleted = [e for e in experiment.store.events(run_id=1) if e.kind == "deleted"]
    assert len(deleted) == 1


# -- commands applied without a controller ---------------------------------------------------


class FakeTracker:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, Any]] = []

    def set_tags(self, mlflow_run_id: str, tags: dict[str, str]) -> None:
        self.calls.append(("tags", mlflow_run_id, tags))

    def end_run(self, mlflow_run_id: str, status: str) -> None:
        self.calls.append(("end", mlflow_run_id, status))


def test_the_next_rf_run_mirrors_commands_applied_without_one_to_mlflow(tmp_path: Path) -> None:
    experiment = Experiment(tmp_path)
    experiment.applier.on_change = None  # as `rf ctl` applies them
    for run_id in (1, 2):
        experiment.add_run(run_id, "ready", chunks=1)
        experiment.store.set_mlflow_run(run_id, f"mlflow-{run_id}")
    experiment.command("stop", 1)
    experiment.command("delete", 2)
    experiment.apply()
    assert [c.verb for c in experiment.store.deferred_commands()] == ["stop", "delete"]

    tracker = FakeTracker()
    mirror_deferred(experiment.store, tracker)  # type: ignore[arg-type]
    assert tracker.calls == [
        ("tags", "mlflow-1", {"rf.state": "stopped", "rf.stop_cause": "rf ctl"}),
        ("tags", "mlflow-2", {"rf.state": "deleted", "rf.delete_cause": "rf ctl"}),
        ("end", "mlflow-2", "KILLED"),
    ]
    assert experiment.store.deferred_commands() == []
    mirror_deferred(experiment.store, tracker)  # type: ignore[arg-type]
    assert len(tracker.calls) == 3, "mirrored once"
    experiment.store.close()
