"""The controller's bookkeeping on disk, without workers or MLflow: which checkpoints stay."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from rfcli.engine.controller import Controller
from rfcli.engine.messages import ChunkDone, ReleaseRun
from rfcli.store.database import ExperimentStore
from rfcli.store.layout import ExperimentLayout


@pytest.fixture
def layout(tmp_path: Path) -> ExperimentLayout:
    return ExperimentLayout(tmp_path)


@pytest.fixture
def store(layout: ExperimentLayout) -> Iterator[ExperimentStore]:
    with ExperimentStore(layout.state_db) as opened:
        for run_id in (1, 2):
            opened.add_run(run_id, {"training": {}}, f"fp{run_id}", name=str(run_id), cause="plan")
        yield opened


@pytest.fixture
def controller(layout: ExperimentLayout, store: ExperimentStore) -> Controller:
    pool = SimpleNamespace(experiment=layout.folder, workers=[], send=lambda worker, message: None)
    return Controller(store, tracker=None, pool=pool, announce=lambda line: None)  # type: ignore[arg-type]


def test_a_run_keeps_its_last_two_checkpoints_and_never_loses_the_one_the_store_points_to(
    layout: ExperimentLayout, store: ExperimentStore, controller: Controller
) -> None:
    kept = []
    for chunk, step in enumerate((5, 10, 15, 20), start=1):
        checkpoint = layout.checkpoints(1) / f"checkpoint-{step}"
        (checkpoint / "run_1").mkdir(parents=True)
        store.set_state(1, "running", cause="scheduler", worker=0)
        controller.record(
            ChunkDone(0, 1, chunk, 4, step, 20, str(checkpoint), step == 20, 1.0, 0.0, 0.1, 0.0)
        )
        assert store.run(1).checkpoint == str(checkpoint) and checkpoint.is_dir()
        kept.append(sorted(path.name for path in layout.checkpoints(1).iterdir()))
    assert kept == [
        ["checkpoint-5"],
        ["checkpoint-10", "checkpoint-5"],
        ["checkpoint-10", "checkpoint-15"],
        ["checkpoint-15", "checkpoint-20"],
    ]


def test_recovery_removes_what_a_kill_left_of_a_deleted_run(
    layout: ExperimentLayout, store: ExperimentStore, controller: Controller
) -> None:
    for run_id in (1, 2):
        (layout.checkpoints(run_id) / "checkpoint-5").mkdir(parents=True)
    store.set_state(1, "deleted", cause="rf ctl")
    controller.recover()
    assert not layout.run_folder(1).exists()
    assert (layout.checkpoints(2) / "checkpoint-5").is_dir()


@pytest.mark.parametrize("verb", ["stop", "delete"])
def test_a_stopped_or_deleted_run_is_released_from_the_worker_it_is_parked_on(
    layout: ExperimentLayout, store: ExperimentStore, verb: str
) -> None:
    sent: list[tuple[int, ReleaseRun]] = []
    pool = SimpleNamespace(experiment=layout.folder, workers=[], send=lambda *message: sent.append(message))
    controller = Controller(store, tracker=None, pool=pool, announce=lambda line: None)  # type: ignore[arg-type]
    controller.placement.parked.update({1: (0, 5), 2: (1, 5)})
    store.add_command(verb, 1, {}, cause="key")

    controller.steer_and_dispatch()

    assert sent == [(0, ReleaseRun(1))]
    assert controller.placement.parked == {2: (1, 5)}


def test_a_run_with_no_learning_signal_gets_one_warning_event(
    layout: ExperimentLayout, store: ExperimentStore
) -> None:
    announced: list[str] = []
    pool = SimpleNamespace(experiment=layout.folder, workers=[], send=lambda worker, message: None)
    controller = Controller(store, tracker=None, pool=pool, announce=announced.append)  # type: ignore[arg-type]
    flat = [(step, "frac_reward_zero_std", 1.0) for step in (1, 2)] + [(2, "reward", 0.0), (1, "reward", 0.0)]
    store.set_config(1, {"trainer": "grpo", "training": {}})
    for chunk, step in ((1, 2), (2, 4)):
        store.set_state(1, "running", cause="scheduler", worker=0)
        checkpoint = layout.checkpoints(1) / f"checkpoint-{step}"
        checkpoint.mkdir(parents=True)
        done = ChunkDone(0, 1, chunk, 4, step, 8, str(checkpoint), False, 1.0, 0.0, 0.1, 0.0, flat)
        controller.record(done)
    [warning] = store.events(run_id=1, kind="warning")
    assert warning.cause == "rf run"
    assert warning.detail is not None and warning.detail.startswith("no learning signal in chunk 1")
    assert [line for line in announced if "warning" in line] == [f"run 1: warning: {warning.detail}"]
