"""Progress inside a chunk: the callback's reports, the controller's in-memory view, the ETA, and the
live table that shows them (at 80 columns)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from rich.console import Console

from rfcli.engine.controller import Controller
from rfcli.engine.messages import ChunkDone, ChunkProgress
from rfcli.engine.progress import LiveProgress, format_duration
from rfcli.store.database import ExperimentStore
from rfcli.store.experiments import STATE_DB
from rfcli.trainers.progress import StepProgress
from rfcli.ui.tables import experiment_view


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def progress(run_id: int, step: int, start: int = 0, end: int = 4, rate: float = 2.0) -> ChunkProgress:
    return ChunkProgress(
        worker=0,
        run_id=run_id,
        step=step,
        chunk_start_step=start,
        chunk_end_step=end,
        chunk_index=end // 4,
        total_chunks=4,
        max_steps=16,
        steps_per_second=rate,
    )


def test_reports_at_each_chunk_start_then_at_most_once_a_second() -> None:
    clock, reports = Clock(), []
    boundaries = [4, 8, 12, 16]
    callback = StepProgress(lambda: boundaries, lambda **where: reports.append(where), every=1.0, clock=clock)
    state = SimpleNamespace(global_step=0, max_steps=16)

    def step(seconds: float) -> None:
        callback.on_step_begin(None, state, None)  # type: ignore[arg-type]
        clock.now += seconds
        state.global_step += 1
        callback.on_step_end(None, state, None)  # type: ignore[arg-type]

    for _ in range(4):  # chunk 1: 4 steps of 0.4 s
        step(0.4)
    assert [r["step"] for r in reports] == [0, 3]  # the start, then once 1 s had passed
    assert reports[1] == {
        "step": 3,
        "chunk_start_step": 0,
        "chunk_end_step": 4,
        "chunk_index": 1,
        "total_chunks": 4,
        "max_steps": 16,
        "steps_per_second": pytest.approx(3 / 1.2),
    }
    clock.now += 60  # parked at the boundary while other runs train
    step(0.5)
    chunk2 = reports[2]
    assert (chunk2["step"], chunk2["chunk_start_step"], chunk2["chunk_end_step"], chunk2["chunk_index"]) == (
        4,
        4,
        8,
        2,
    )
    step(0.6)
    assert reports[-1]["step"] == 6
    assert reports[-1]["steps_per_second"] == pytest.approx(2 / 1.1)  # the parked minute does not count


def test_eta_is_steps_left_at_the_pace_so_far() -> None:
    clock = Clock()
    live = LiveProgress(clock=clock)
    runs = [
        run_record(1, "running", 0, 16),
        run_record(2, "pending", 0, None),
        run_record(3, "stopped", 4, 16),
    ]
    assert live.eta_seconds(runs) is None  # no pace yet
    live.note(progress(1, 0))
    clock.now += 10
    live.note(progress(1, 4, rate=0.4))
    # 4 steps in 10 s; left: run 1 has 12, run 2 (length unknown: the median, 16) has 16, run 3 is stopped.
    assert live.eta_seconds(runs) == pytest.approx((12 + 16) * 10 / 4)
    assert live.step(runs[0]) == 4
    live.chunk_ended(1)
    assert live.step(runs[0]) == 0  # back to what the store says


def test_durations_read_like_a_clock() -> None:
    assert [format_duration(s) for s in (5, 125, 7500)] == ["5s", "2m05s", "2h05m"]


def run_record(run_id: int, state: str, step: int, max_steps: int | None) -> Any:
    return SimpleNamespace(id=run_id, state=state, global_step=step, max_steps=max_steps)


@pytest.fixture
def store(tmp_path: Path) -> ExperimentStore:
    store = ExperimentStore(tmp_path / "sweep" / STATE_DB)
    for run_id, (r, lr) in enumerate([(8, 1e-3), (8, 3e-3), (32, 1e-3), (32, 3e-3)], start=1):
        config = {
            "lora": {"r": r, "lora_alpha": 2 * r, "target_modules": "all-linear"},
            "training": {"learning_rate": lr, "per_device_train_batch_size": 16},
        }
        store.add_run(
            run_id, config, f"fp{run_id}", name=f"{run_id} r={r} lora_alpha={2 * r} lr={lr}", cause="plan"
        )
    return store


class FakePool:
    def __init__(self, folder: Path) -> None:
        self.experiment = folder
        self.workers: list[Any] = []


def test_controller_keeps_progress_in_memory_and_records_totals_once(store: ExperimentStore) -> None:
    controller = Controller(store, tracker=None, pool=FakePool(store.path.parent), announce=print)  # type: ignore[arg-type]
    controller.placement.busy[1] = 0
    controller.handle(progress(1, 0))
    assert (store.run(1).total_chunks, store.run(1).max_steps) == (4, 16)  # before its first chunk ends
    controller.handle(progress(1, 3))
    assert controller.progress.in_chunk[1].step == 3
    assert store.run(1).global_step == 0 and store.metrics(1) == []  # nothing per step in SQLite
    controller.handle(progress(2, 1))  # not training here (a stale report): ignored
    assert 2 not in controller.progress.in_chunk
    done = ChunkDone(0, 1, 1, 4, 4, 16, "ckpt", False, 2.0, 0.0, 0.1, 0.0, [(4, "loss", 2.0)])
    controller.handle(done)
    assert 1 not in controller.progress.in_chunk and store.run(1).chunks_done == 1


def render(store: ExperimentStore, live: LiveProgress | None, selected: int | None) -> list[str]:
    console = Console(width=80, record=True, color_system=None)
    console.print(experiment_view(store, store.path.parent, selected, live))
    return console.export_text().splitlines()


def test_live_table_fits_80_columns_with_settings_bar_and_selection(store: ExperimentStore) -> None:
    store.set_plan_totals(2, 4, 16)
    store.set_state(2, "running", cause="scheduler", worker=0)
    store.set_plan_totals(1, 4, 128)  # the widest cells: a finished run with three-digit steps
    store.record_chunk(1, chunks_done=4, global_step=128, checkpoint="c", metrics=[(128, "loss", 1.23456)])
    store.set_state(1, "running", cause="scheduler", worker=0)
    store.set_state(1, "completed", cause="scheduler")
    clock = Clock()
    live = LiveProgress(clock=clock)
    live.note(progress(2, 4, start=4, end=8))
    clock.now += 30
    live.note(progress(2, 6, start=4, end=8, rate=1.5))
    lines = render(store, live, selected=2)
    assert max(len(line) for line in lines) <= 80
    header = next(line for line in lines if "state" in line)
    assert header.split()[:4] == ["run", "r", "alpha", "lr"]  # the settings that differ, not a name
    row = next(line for line in lines if "▶ 2" in line)  # the selected run is marked
    for cell in ("8", "16", "0.003", "running", "0/4", "2/4", "6/16", "1.5"):
        assert cell in row.split(), (cell, row)
    assert "━" in row  # the bar of the chunk in flight
    assert "left" in lines[0]  # the experiment's ETA in the title
    assert not any("▶" in line for line in render(store, None, selected=None))
