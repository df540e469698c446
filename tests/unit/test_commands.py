"""Giving a command (`engine/commands.py`): each rule that refuses one at once, and what is queued."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rfcli.config.errors import ConfigError
from rfcli.engine.commands import CommandRefused, submit
from rfcli.engine.control import CommandApplier
from rfcli.store.database import ExperimentStore
from rfcli.store.layout import ExperimentLayout


@pytest.fixture
def store(tmp_path: Path, run_config: dict[str, Any]) -> Iterator[ExperimentStore]:
    """Run 1 ready at step 10, run 2 completed, run 3 deleted."""
    with ExperimentStore(tmp_path / "state.db") as opened:
        for run_id in (1, 2, 3):
            opened.add_run(run_id, run_config, f"fp{run_id}", name=str(run_id), cause="plan")
            opened.set_plan_totals(run_id, total_chunks=4, max_steps=40)
            opened.set_state(run_id, "running", cause="scheduler")
            opened.record_chunk(run_id, chunks_done=1, global_step=10, checkpoint="c", metrics=[])
        opened.set_state(1, "ready", cause="scheduler")
        opened.set_state(2, "completed", cause="scheduler")
        opened.set_state(3, "deleted", cause="rf ctl")
        yield opened


def give(store: ExperimentStore, verb: str, run_id: int, **options: Any) -> int:
    return submit(store, verb, run_id, cause="rf ctl", **options)


@pytest.mark.parametrize(
    ("verb", "run_id", "options", "reason"),
    [
        ("stop", 9, {}, "its runs are 1-3"),  # rule 1
        ("pause", 1, {}, "unknown command 'pause'; expected one of stop, resume, delete, clone"),
        ("resume", 3, {}, "run 3 is deleted; it can no longer be steered"),  # rule 2
        ("delete", 3, {}, "run 3 is deleted; it can no longer be steered"),
        ("clone", 3, {"warm": True}, "run 3 is deleted; a warm clone needs its weights"),
        ("stop", 2, {}, "run 2 is completed"),  # rule 3
        ("resume", 2, {}, "run 2 is completed"),
    ],
)
def test_a_command_that_can_never_apply_is_refused_and_not_queued(
    store: ExperimentStore, verb: str, run_id: int, options: dict[str, Any], reason: str
) -> None:
    with pytest.raises(CommandRefused) as refused:
        give(store, verb, run_id, **options)
    assert reason in str(refused.value)
    assert store.pending_commands() == []


def test_nothing_but_a_cold_clone_queues_behind_a_delete(store: ExperimentStore) -> None:  # rule 4
    give(store, "delete", 1)
    for verb, options in (("delete", {}), ("stop", {}), ("resume", {}), ("clone", {"warm": True})):
        with pytest.raises(CommandRefused, match="run 1 is already waiting to be deleted"):
            give(store, verb, 1, **options)
    give(store, "clone", 1)
    assert [command.verb for command in store.pending_commands()] == ["delete", "clone"]


def test_a_clone_of_a_deleted_run_from_its_config_is_queued(store: ExperimentStore) -> None:
    command_id = give(store, "clone", 3, overrides=["training.learning_rate=1e-4"])
    args = store.command(command_id).args
    assert args["config"]["training"]["learning_rate"] == 1e-4
    assert args["config"]["training"]["max_steps"] == 40, "the parent's max_steps"
    assert (args["overrides"], args["warm"]) == (["training.learning_rate=1e-4"], False)


def test_a_clone_with_a_bad_override_is_a_config_error(store: ExperimentStore) -> None:  # rule 5
    with pytest.raises(ConfigError, match="did you mean 'learning_rate'"):
        give(store, "clone", 1, overrides=["training.lerning_rate=1e-4"])
    assert store.pending_commands() == []


def test_stop_resume_and_delete_of_a_live_run_are_queued(store: ExperimentStore) -> None:
    ids = [give(store, verb, 1) for verb in ("stop", "resume", "delete")]
    assert [(c.id, c.verb, c.run_id, c.args, c.cause) for c in store.pending_commands()] == [
        (ids[0], "stop", 1, {}, "rf ctl"),
        (ids[1], "resume", 1, {}, "rf ctl"),
        (ids[2], "delete", 1, {}, "rf ctl"),
    ]


def test_the_live_tables_keys_give_commands_by_the_same_path(store: ExperimentStore, tmp_path: Path) -> None:
    from rich.console import Console

    from rfcli.ui.live import LiveView
    from rfcli.ui.steering import Request

    view = LiveView(store, tmp_path, Console(file=None, force_terminal=False))
    view.handle(Request("resume", 3))
    assert view.steering.note == "resume run 3 refused: run 3 is deleted; it can no longer be steered"
    view.handle(Request("clone", 1, ["training.lerning_rate=1e-4"]))
    assert view.steering.note.startswith("clone run 1 refused: clone: training.lerning_rate:")
    assert store.pending_commands() == []
    view.handle(Request("stop", 1))
    assert view.steering.note == "stop run 1: sent"
    [command] = store.pending_commands()
    assert (command.verb, command.run_id, command.cause) == ("stop", 1, "key")


# -- rule 6: refused when given, since the commands before it would make it refused ---------------


@pytest.mark.parametrize(
    ("before", "verb", "options", "reason"),
    [
        (["stop"], "stop", {}, "run 1 is already waiting to be stopped"),
        ([], "resume", {}, "run 1 is ready; only a stopped run resumes"),
        (["stop", "resume"], "resume", {}, "run 1 is ready; only a stopped run resumes"),
        ([], "retry", {}, "run 1 is ready; only a failed run is retried"),
    ],
)
def test_a_command_the_ones_before_it_would_make_refused_is_refused_at_once(
    store: ExperimentStore, before: list[str], verb: str, options: dict[str, Any], reason: str
) -> None:
    for earlier in before:
        give(store, earlier, 1)
    with pytest.raises(CommandRefused, match=reason):
        give(store, verb, 1, **options)
    assert [command.verb for command in store.pending_commands()] == before


def test_a_resume_behind_a_stop_is_queued(store: ExperimentStore) -> None:
    give(store, "stop", 1)
    give(store, "resume", 1)
    assert [command.verb for command in store.pending_commands()] == ["stop", "resume"]


def test_a_warm_clone_waits_for_weights_only_while_a_chunk_is_in_flight(
    store: ExperimentStore, run_config: dict[str, Any]
) -> None:
    store.add_run(4, run_config, "fp4", name="4", cause="plan")
    with pytest.raises(
        CommandRefused, match="run 4 has no finished chunk yet; a warm clone needs its weights"
    ):
        give(store, "clone", 4, warm=True)
    store.set_state(4, "running", cause="scheduler", worker=0)  # its first chunk may give it weights
    give(store, "clone", 4, warm=True, overrides=["training.max_steps=80"])
    assert [(c.verb, c.run_id) for c in store.pending_commands()] == [("clone", 4)]


def test_of_many_commands_given_at_once_none_is_queued_and_then_refused(
    store: ExperimentStore, tmp_path: Path
) -> None:
    """40 `rf ctl` processes at once, each with its own connection: each is judged behind the ones
    queued before it, so every queued command then applies."""
    verbs = ["stop", "resume", "stop", "resume", "delete"] * 8
    answers: list[str] = []

    def give_one(verb: str) -> None:
        with ExperimentStore(tmp_path / "state.db") as own:
            try:
                submit(own, verb, 1, cause="rf ctl")
                answers.append("queued")
            except CommandRefused:
                answers.append("refused")

    threads = [threading.Thread(target=give_one, args=(verb,)) for verb in verbs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    queued = store.pending_commands()
    assert answers.count("queued") == len(queued) > 0
    CommandApplier(store, ExperimentLayout(tmp_path), on_change=None).apply_pending(busy=())
    assert [store.command(command.id).outcome for command in queued] == ["applied"] * len(queued)
