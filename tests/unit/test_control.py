"""Command handling in `engine/control.py`, without training: a store with runs in given states,
fake checkpoint folders, no workers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from rfcli.engine.control import CommandApplier
from rfcli.engine.mlflow_mirror import MlflowMirror
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

    def finish(self: ExperimentStore, command_id: int, *, outcome: str, **details: Any) -> None:
        if outcome == "applied":
            raise KeyboardInterrupt("killed")
        original(self, command_id, outcome=outcome, **details)

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
    MlflowMirror(experiment.store, tracker).mirror_deferred()  # type: ignore[arg-type]
    assert tracker.calls == [
        ("tags", "mlflow-1", {"rf.state": "stopped", "rf.stop_cause": "rf ctl"}),
        ("tags", "mlflow-2", {"rf.state": "deleted", "rf.delete_cause": "rf ctl"}),
        ("end", "mlflow-2", "KILLED"),
    ]
    assert experiment.store.deferred_commands() == []
    MlflowMirror(experiment.store, tracker).mirror_deferred()  # type: ignore[arg-type]
    assert len(tracker.calls) == 3, "mirrored once"
    experiment.store.close()


# -- each verb, and each refusal when it is applied ----------------------------------------------


def outcome(experiment: Experiment, command_id: int) -> tuple[str | None, str | None]:
    command = experiment.store.command(command_id)
    return command.outcome, command.error


def test_stop_then_resume(experiment: Experiment) -> None:
    experiment.add_run(1, "ready", chunks=1)
    stop = experiment.command("stop", 1)
    assert experiment.apply() == ["run 1: stopped after chunk 1"]
    resume = experiment.command("resume", 1)
    assert experiment.apply() == ["run 1: resumed"]
    assert outcome(experiment, stop) == outcome(experiment, resume) == ("applied", None)
    assert experiment.store.run(1).state == "ready"
    assert experiment.changes == [(1, "stop", "rf ctl"), (1, "resume", "rf ctl")]
    kinds = [(event.kind, event.cause) for event in experiment.store.events(run_id=1)][:2]
    assert kinds == [("ready", "rf ctl"), ("stopped", "rf ctl")]


def test_a_cold_clone_is_a_pending_run_with_the_parents_config_changed(experiment: Experiment) -> None:
    experiment.add_run(1, "completed", chunks=2)
    changed = {**CONFIG, "training": {"learning_rate": 5e-4, "max_steps": 40}}
    experiment.command("clone", 1, config=changed, overrides=["training.learning_rate=5e-4"])
    assert experiment.apply() == ["run 2: cloned from run 1"]
    clone = experiment.store.run(2)
    assert (clone.state, clone.parent_id, clone.warm_start, clone.config) == ("pending", 1, False, changed)
    assert clone.name == "2 clone of 1 training.learning_rate=5e-4"
    assert not (experiment.folder / "runs" / "2").exists()


def test_a_warm_clone_starts_ready_from_a_copy_of_the_parents_weights(experiment: Experiment) -> None:
    experiment.add_run(1, "ready", chunks=2)
    experiment.command("clone", 1, warm=True, config={**CONFIG, "training": {"max_steps": 80}})
    assert experiment.apply() == ["run 2: cloned from run 1 with its current weights"]
    clone = experiment.store.run(2)
    copied = experiment.folder / "runs" / "2" / "checkpoints" / "checkpoint-20"
    assert (clone.state, clone.global_step, clone.chunks_done, clone.checkpoint) == (
        "ready",
        20,
        2,
        str(copied),
    )
    assert (copied / "run_2" / "adapter_model.safetensors").read_bytes() == b"weights"
    assert not (copied / "run_1").exists() and not (copied / "optimizer.pt").exists()


def test_stop_and_delete_of_a_run_mid_chunk_wait_for_its_boundary(experiment: Experiment) -> None:
    experiment.add_run(1, "running", chunks=1)
    stop = experiment.command("stop", 1)
    clone = experiment.command("clone", 1)
    assert experiment.apply(busy=(1,)) == ["run 2: cloned from run 1"]
    assert experiment.store.command(stop).pending
    experiment.store.set_state(1, "ready", cause="scheduler")
    assert experiment.apply() == ["run 1: stopped after chunk 1"]
    assert outcome(experiment, clone) == ("applied", None)


def test_a_runs_commands_apply_in_the_order_given_behind_one_that_waits_for_its_chunk(
    experiment: Experiment,
) -> None:
    experiment.add_run(1, "running", chunks=1)
    stop, resume = experiment.command("stop", 1), experiment.command("resume", 1)
    clone = experiment.command("clone", 1)
    assert experiment.apply(busy=(1,)) == ["run 2: cloned from run 1"]  # a clone changes no state
    assert experiment.store.command(stop).pending and experiment.store.command(resume).pending
    experiment.store.set_state(1, "ready", cause="scheduler")
    assert experiment.apply() == ["run 1: stopped after chunk 1", "run 1: resumed"]
    assert [outcome(experiment, command) for command in (stop, resume, clone)] == [("applied", None)] * 3


@pytest.mark.parametrize(
    ("state", "verb", "args", "reason"),
    [
        ("stopped", "stop", {}, "run 1 is already stopped"),
        ("ready", "resume", {}, "run 1 is ready; only a stopped run resumes"),
        ("completed", "stop", {}, "run 1 is completed"),
        ("failed", "resume", {}, "run 1 is failed"),
        ("deleted", "delete", {}, "run 1 is deleted; it can no longer be steered"),
        ("deleted", "clone", {"warm": True}, "run 1 is deleted; a warm clone needs its weights"),
        (
            "pending",
            "clone",
            {"warm": True},
            "run 1 has no finished chunk yet; a warm clone needs its weights",
        ),
        ("ready", "clone", {"warm": True}, "run 1 is at step 20 and the clone would stop at 20"),
        ("ready", "rewind", {}, "unknown command 'rewind'; expected one of stop, resume, delete, clone"),
    ],
)
def test_a_command_that_cannot_apply_is_refused_with_its_reason(
    experiment: Experiment, state: str, verb: str, args: dict[str, Any], reason: str
) -> None:
    experiment.add_run(1, state, chunks=0 if state == "pending" else 2)
    if verb == "clone":
        args = {**args, "config": {**CONFIG, "training": {"max_steps": 20}}}
    command_id = experiment.command(verb, 1, **args)
    [line] = experiment.apply()
    assert line.startswith(f"{verb} run 1 refused: {reason}")
    command_outcome, error = outcome(experiment, command_id)
    assert command_outcome == "refused" and error is not None and error.startswith(reason)
    assert [run.id for run in experiment.store.runs()] == [1]
    refused = experiment.store.events(run_id=1, limit=1)[0]
    assert (refused.kind, refused.cause) == (f"{verb} refused", "rf ctl")
    assert experiment.changes == []


def test_a_command_for_a_run_the_experiment_does_not_have_is_refused(experiment: Experiment) -> None:
    experiment.add_run(1)
    experiment.command("stop", 5)
    [line] = experiment.apply()
    assert line == f"stop run 5 refused: no run 5 in {experiment.store.path}: its runs are 1"
    refused = experiment.store.events(limit=1)[0]
    assert (refused.run_id, refused.kind) == (None, "stop refused"), "an event of the experiment"
