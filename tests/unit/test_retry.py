"""`retry` as the controller applies it: a failed run goes back to the schedule from its last
recorded chunk, with the config the retry gives it; any other run is refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from rfcli.config.plan import config_fingerprint
from rfcli.engine.control import CommandApplier
from rfcli.store.checksums import ResumePoint, resume_point
from rfcli.store.database import ExperimentStore
from rfcli.store.layout import STATE_DB, ExperimentLayout

CONFIG = {"training": {"learning_rate": 1e8}, "seed": 0}


CHECKPOINT_FILES = {"adapter_model.safetensors", "trainer_state.json", "optimizer.pt", "scheduler.pt"}


@pytest.fixture
def store(tmp_path: Path) -> ExperimentStore:
    store = ExperimentStore(tmp_path / STATE_DB)
    for run_id in (1, 2):
        checkpoint = tmp_path / "runs" / str(run_id) / "checkpoints" / "checkpoint-8"
        checkpoint.mkdir(parents=True)
        for name in CHECKPOINT_FILES:
            (checkpoint / name).write_text("x")
        store.add_run(run_id, CONFIG, config_fingerprint(CONFIG), name=str(run_id), cause="plan")
        store.set_plan_totals(run_id, total_chunks=4, max_steps=16)
        store.record_chunk(run_id, chunks_done=2, global_step=8, checkpoint=str(checkpoint), metrics=[])
    for run_id in (1, 2):
        store.set_state(run_id, "running", cause="scheduler", worker=0)
    store.set_state(1, "failed", cause="error", error="NonFiniteLossError: loss is nan at step 10")
    store.set_state(2, "completed", cause="scheduler")
    return store


def apply(
    store: ExperimentStore,
    run_id: int,
    config: dict,
    overrides: tuple[str, ...] = ("training.learning_rate=0.001",),
) -> list[str]:
    store.add_command("retry", run_id, {"config": config, "overrides": list(overrides)}, "rf ctl")
    changed: list[tuple[int, str]] = []
    applier = CommandApplier(
        store, ExperimentLayout(store.path.parent), lambda run, verb, cause: changed.append((run.id, verb))
    )
    lines = applier.apply_pending(busy=())
    assert changed == ([(run_id, "retry")] if "retries" in lines[0] else [])
    return lines


def test_a_failed_run_retries_from_its_last_chunk_with_the_new_config(store: ExperimentStore) -> None:
    new = {"training": {"learning_rate": 1e-3}, "seed": 0}
    lines = apply(store, 1, new)
    assert lines == ["run 1: retries from chunk 2 (step 8) with training.learning_rate=0.001"]
    run = store.run(1)
    assert (run.state, run.error, run.chunks_done, run.global_step) == ("ready", None, 2, 8)
    assert run.config == new and run.fingerprint == config_fingerprint(CONFIG)  # still the plan's run
    assert run.total_chunks is None and run.max_steps is None  # learned again as it trains
    # A fresh optimizer and schedule from there (a resumed optimizer would bring back the old
    # learning rate), said by the store: the recorded checkpoint keeps every file.
    assert run.fresh_optimizer_step == 8
    assert resume_point(run.checkpoint, run.fresh_optimizer_step) == ResumePoint(run.checkpoint, True)
    assert {path.name for path in Path(run.checkpoint or "").iterdir()} == CHECKPOINT_FILES
    event = store.events(limit=1, run_id=1)[0]
    assert (event.kind, event.cause) == ("ready", "rf ctl")
    assert event.detail == "retry from chunk 2 (step 8) with training.learning_rate=0.001"


def test_a_run_that_did_not_fail_is_not_retried(store: ExperimentStore) -> None:
    lines = apply(store, 2, CONFIG)
    assert lines == ["retry run 2 refused: run 2 is completed; only a failed run is retried"]
    assert store.run(2).state == "completed"


def test_a_retry_interrupted_before_its_mark_leaves_the_recorded_checkpoint_whole(
    store: ExperimentStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    def killed(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(ExperimentStore, "finish_command", killed)
    with pytest.raises(KeyboardInterrupt):
        apply(store, 1, {"training": {"learning_rate": 1e-3}, "seed": 0})
    run = store.run(1)
    assert {path.name for path in Path(run.checkpoint or "").iterdir()} == CHECKPOINT_FILES
    assert (run.state, run.config, run.fresh_optimizer_step) == ("failed", CONFIG, None)


def test_a_retry_without_changes_resumes_exactly(store: ExperimentStore) -> None:
    assert apply(store, 1, CONFIG) == [
        "run 1: retries from chunk 2 (step 8) with training.learning_rate=0.001"
    ]
    run = store.run(1)
    assert run.state == "ready" and run.max_steps == 16 and run.fresh_optimizer_step is None
    assert {path.name for path in Path(run.checkpoint or "").iterdir()} == CHECKPOINT_FILES
