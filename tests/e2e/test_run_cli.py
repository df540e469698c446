"""`rf run` end to end: real sweeps of `rf-tiny` trained through the CLI, checked in the state store
and in MLflow. The four-run sweep is trained once (`trained_sweep`); variants of it are compared to it.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from rfcli.store.database import ExperimentStore, RunRecord
from rfcli.tracking.mlflow_tracker import MlflowTracker, tracking_uri_for
from tests.e2e.conftest import REPO_ROOT, RF, run_rf
from tests.pinned import check_pinned
from tests.processes import python_path_with

pytestmark = pytest.mark.e2e

RunRf = Callable[..., subprocess.CompletedProcess[str]]
WriteSweep = Callable[..., Path]
Sweep = tuple[Path, Path]
REL_TOL = 1e-5


# Reading what a sweep left behind.


def stored_runs(folder: Path) -> list[RunRecord]:
    with ExperimentStore(folder / "state.db") as store:
        return store.runs()


def stored_series(folder: Path, key: str) -> dict[int, dict[int, float]]:
    """{run id: {step: value}} of one metric, from the state store."""
    with ExperimentStore(folder / "state.db") as store:
        return {
            run.id: {step: value for step, name, value in store.metrics(run.id) if name == key}
            for run in store.runs()
        }


def series_by_settings(folder: Path, key: str) -> dict[tuple[float, int], dict[int, float]]:
    """{(learning rate, LoRA rank): {step: value}}: runs of two sweeps matched by what they train."""
    series = stored_series(folder, key)
    return {
        (run.config["training"]["learning_rate"], run.config["lora"]["r"]): series[run.id]
        for run in stored_runs(folder)
    }


def mlflow_runs(folder: Path) -> tuple[MlflowTracker, list[Any]]:
    """The experiment's tracker and its MLflow runs (looked up by experiment name = folder name)."""
    tracker = MlflowTracker(tracking_uri_for(folder), folder.name)
    client = tracker._client  # noqa: SLF001 - the tracker exposes no search; tests read MLflow directly
    return tracker, client.search_runs([tracker.experiment_id], max_results=1000)


def mlflow_step_counts(tracker: MlflowTracker, run: Any) -> dict[str, list[int]]:
    """{metric key: every step it was logged at, duplicates kept} of one MLflow run."""
    return {
        key: [step for step, _ in tracker.metric_history(run.info.run_id, key)] for key in run.data.metrics
    }


def assert_same_series(
    expected: dict[Any, dict[int, float]], actual: dict[Any, dict[int, float]], what: str
) -> None:
    assert actual.keys() == expected.keys(), f"{what}: runs differ"
    for run_id, steps in expected.items():
        assert actual[run_id].keys() == steps.keys(), f"{what}: run {run_id} logged other steps"
        for step, value in steps.items():
            assert math.isclose(actual[run_id][step], value, rel_tol=REL_TOL), (
                f"{what}: run {run_id} step {step}: {actual[run_id][step]!r} != {value!r}"
            )


def most_runs_training_at_once(folder: Path) -> int:
    """Replays the event log: the most runs that were 'running' at the same moment (a run stops
    training at its 'trained' event; its checkpoint is then written while the next run trains)."""
    with ExperimentStore(folder / "state.db") as store:
        events = sorted(store.events(limit=10_000), key=lambda event: event.id)
    running: set[int | None] = set()
    most = 0
    for event in events:
        if event.kind == "running":
            running.add(event.run_id)
        else:
            running.discard(event.run_id)
        most = max(most, len(running))
    return most


def most_runs_trained_between_chunks(folder: Path) -> int:
    """The most other runs that trained a chunk between two chunks of one run: 0 when runs went one
    after another, more when they took turns."""
    with ExperimentStore(folder / "state.db") as store:
        starts = [
            event.run_id
            for event in sorted(store.events(limit=10_000), key=lambda e: e.id)
            if event.kind == "running"
        ]
    most = 0
    for index, run_id in enumerate(starts):
        following = starts[index + 1 :]
        if run_id in following:
            most = max(most, len(set(following[: following.index(run_id)])))
    return most


# 1. A four-run SFT LoRA sweep.


def test_sweep_trains_every_run_to_its_last_step(trained_sweep: Sweep) -> None:
    _, folder = trained_sweep
    runs = stored_runs(folder)
    losses = stored_series(folder, "loss")
    learning_rates = stored_series(folder, "learning_rate")
    eval_losses = stored_series(folder, "eval_loss")
    token_f1 = stored_series(folder, "eval_token_f1")

    assert len(runs) == 4
    assert {(run.config["training"]["learning_rate"], run.config["lora"]["r"]) for run in runs} == {
        (1e-3, 4),
        (1e-3, 8),
        (3e-3, 4),
        (3e-3, 8),
    }
    for run in runs:
        assert run.state == "completed", run
        assert run.error is None
        assert run.total_chunks == 4
        assert run.chunks_done == run.total_chunks
        assert run.max_steps is not None and run.max_steps > 4
        assert run.global_step == run.max_steps
        every_step = set(range(1, run.max_steps + 1))
        assert losses[run.id].keys() == every_step, f"run {run.id}: loss steps"
        assert learning_rates[run.id].keys() == every_step, f"run {run.id}: learning_rate steps"
        assert all(math.isfinite(loss) for loss in losses[run.id].values())
        # One epoch cut into 4 chunks of whole steps: chunk k ends at step max_steps * k // 4.
        boundaries = {run.max_steps * chunk // 4 for chunk in range(1, 5)}
        assert eval_losses[run.id].keys() == boundaries, f"run {run.id}: eval_loss steps"
        assert token_f1[run.id].keys() == boundaries, f"run {run.id}: eval_token_f1 steps"
        assert all(0 <= score <= 1 for score in token_f1[run.id].values())
        assert run.checkpoint is not None
        checkpoint = Path(run.checkpoint)
        assert checkpoint.is_dir() and checkpoint.is_relative_to(folder)
        assert checkpoint.name == f"checkpoint-{run.max_steps}"
        state = json.loads((checkpoint / "trainer_state.json").read_text(encoding="utf-8"))
        assert state["global_step"] == run.max_steps
        assert list(checkpoint.rglob("adapter_model.safetensors")), f"no LoRA adapter in {checkpoint}"
    # Each run is trained with its own settings: no two loss curves are the same.
    curves = {tuple(series[step] for step in sorted(series)) for series in losses.values()}
    assert len(curves) == 4


def test_sweep_is_mirrored_in_mlflow(trained_sweep: Sweep) -> None:
    _, folder = trained_sweep
    runs = {str(run.id): run for run in stored_runs(folder)}
    losses = stored_series(folder, "loss")
    tracker, logged = mlflow_runs(folder)

    assert tracker.experiment_name == "sweep"
    assert sorted(run.data.tags["rf.run_id"] for run in logged) == sorted(runs)
    for mlflow_run in logged:
        run = runs[mlflow_run.data.tags["rf.run_id"]]
        assert mlflow_run.info.run_id == run.mlflow_run_id
        assert mlflow_run.info.run_name == run.name
        assert mlflow_run.info.status == "FINISHED"
        params = mlflow_run.data.params
        assert float(params["training.learning_rate"]) == run.config["training"]["learning_rate"]
        assert int(params["lora.r"]) == run.config["lora"]["r"]
        assert params["model.name"] == "rf-tiny"
        assert int(params["num_chunks"]) == 4
        steps = mlflow_step_counts(tracker, mlflow_run)
        assert steps["loss"] == list(range(1, run.global_step + 1))
        assert steps["eval_token_f1"] == steps["eval_loss"]
        for key, logged_steps in steps.items():
            assert len(logged_steps) == len(set(logged_steps)), f"{key} logged twice at a step"
        history = dict(tracker.metric_history(mlflow_run.info.run_id, "loss"))
        assert_same_series({run.id: losses[run.id]}, {run.id: history}, "MLflow loss")


def test_sft_losses_equal_the_pinned_ones(trained_sweep: Sweep) -> None:
    """One run's absolute losses, as the libraries and rf compute them today (see tests/pinned.py)."""
    _, folder = trained_sweep
    for key in ("loss", "eval_loss", "learning_rate"):
        check_pinned(f"sft lr=0.001 r=4 {key}", series_by_settings(folder, key)[(1.0e-3, 4)])


def test_status_shows_every_run_completed(trained_sweep: Sweep, rf: RunRf) -> None:
    _, folder = trained_sweep
    shown = json.loads(rf("status", "sweep", "--dir", folder.parent, "--json", expect=0).stdout)
    assert shown["experiment"] == "sweep"
    assert [(run["id"], run["state"], run["progress"]) for run in shown["runs"]] == [
        (run_id, "completed", 1.0) for run_id in (1, 2, 3, 4)
    ]
    for run in shown["runs"]:
        assert run["chunks_done"] == run["total_chunks"] == 4
        assert math.isfinite(run["latest_metrics"]["loss"])
        assert math.isfinite(run["latest_metrics"]["eval_loss"])
        assert 0 <= run["latest_metrics"]["eval_token_f1"] <= 1

    table = rf("status", "--dir", folder.parent, expect=0).stdout
    assert "eval_token_f1" in table
    assert "4 runs" in table and "4 completed" in table
    assert table.count("completed") >= 5  # one per run, and the counts line
    assert table.count("4/4") == 4


def test_running_a_finished_sweep_again_changes_nothing(trained_sweep: Sweep, rf: RunRf) -> None:
    config, folder = trained_sweep
    before = stored_runs(folder)
    losses_before = stored_series(folder, "loss")

    rf("run", config, expect=0)

    after = stored_runs(folder)
    assert [(r.state, r.chunks_done, r.global_step, r.checkpoint) for r in after] == [
        (r.state, r.chunks_done, r.global_step, r.checkpoint) for r in before
    ]
    assert stored_series(folder, "loss") == losses_before
    tracker, logged = mlflow_runs(folder)
    assert len(logged) == 4
    for mlflow_run in logged:
        assert mlflow_run.info.status == "FINISHED"
        for key, steps in mlflow_step_counts(tracker, mlflow_run).items():
            assert len(steps) == len(set(steps)), f"run {mlflow_run.info.run_name}: {key} logged twice"


# 2. Chunking does not change training.


def test_training_in_chunks_matches_training_in_one_go(trained_sweep: Sweep, rf: RunRf) -> None:
    """With generation metrics sampled at every boundary of the chunked runs and at the end of both."""
    config, chunked = trained_sweep
    # Runs 1 and 2 of the sweep (rank 4), trained without chunk boundaries, one after the other.
    rf("run", config, "name=sweep-one-chunk", "num_chunks=1", "lora.r=4", expect=0)
    whole = chunked.parent / "sweep-one-chunk"

    assert [(run.state, run.total_chunks) for run in stored_runs(whole)] == [("completed", 1)] * 2
    # The warmup (8 steps) is still rising when the first chunk ends, so the schedule crosses a boundary.
    first_boundary = min(stored_series(chunked, "eval_loss")[1])
    rates = stored_series(chunked, "learning_rate")[1]
    assert rates[first_boundary] < rates[first_boundary + 1] < rates[first_boundary + 2]
    # Chunked, the two runs took turns (chunk 1 of each, then chunk 2 of each, ...).
    assert most_runs_trained_between_chunks(chunked) > 1
    for key in ("loss", "learning_rate"):
        expected = series_by_settings(whole, key)
        actual = {
            settings: values
            for settings, values in series_by_settings(chunked, key).items()
            if settings in expected
        }
        assert_same_series(expected, actual, key)
    # Both sample their last completions from the same generators, so they score the same.
    last_scores = [
        {
            settings: values[max(values)]
            for settings, values in series_by_settings(sweep, "eval_token_f1").items()
        }
        for sweep in (whole, chunked)
    ]
    assert last_scores[0].items() <= last_scores[1].items()


def test_a_full_fine_tune_in_chunks_matches_one_in_one_go(trained_sweep: Sweep, rf: RunRf) -> None:
    """Without LoRA a run is not parked between chunks but resumed from its checkpoint each time."""
    config, sweeps = trained_sweep[0], trained_sweep[1].parent
    full = ["lora=null", "training.learning_rate=1e-4"]
    rf("run", config, "name=full-one-chunk", "num_chunks=1", *full, expect=0)
    rf("run", config, "name=full-four-chunks", "num_chunks=4", *full, expect=0)
    for key in ("loss", "learning_rate"):
        whole = stored_series(sweeps / "full-one-chunk", key)
        chunked = stored_series(sweeps / "full-four-chunks", key)
        assert [run.total_chunks for run in stored_runs(sweeps / "full-four-chunks")] == [4]
        assert_same_series(whole, chunked, key)


# 3. Two workers train the same runs as one.


def test_two_workers_train_the_same_runs_as_one(trained_sweep: Sweep, rf: RunRf) -> None:
    config, one_worker = trained_sweep
    rf("run", config, "name=sweep-two-workers", "--workers", "2", expect=0)
    two_workers = one_worker.parent / "sweep-two-workers"

    assert [run.state for run in stored_runs(two_workers)] == ["completed"] * 4
    assert most_runs_training_at_once(two_workers) == 2
    assert most_runs_training_at_once(one_worker) == 1
    assert_same_series(
        series_by_settings(one_worker, "loss"), series_by_settings(two_workers, "loss"), "loss"
    )


# 4. One failing run leaves the others training.


def test_a_run_with_a_diverging_loss_fails_alone(tmp_path: Path, rf: RunRf, write_sweep: WriteSweep) -> None:
    experiments = tmp_path / "experiments"
    config = write_sweep(tmp_path / "sweep.yaml", experiments, "diverging")
    # Run 2's learning rate of 1e8 turns the loss into NaN or inf within a few steps.
    result = rf(
        "run",
        config,
        "lora.r=4",
        "training.learning_rate={grid: [1.0e-3, 1.0e+8]}",
        "training.warmup_steps=0",
        expect=1,
    )
    folder = experiments / "diverging"
    assert "Traceback" not in result.stderr
    good, bad = stored_runs(folder)

    assert good.state == "completed" and good.error is None
    assert good.global_step == good.max_steps
    assert bad.config["training"]["learning_rate"] == 1e8
    assert bad.state == "failed"
    assert bad.error is not None and "NonFiniteLossError" in bad.error and "loss is" in bad.error
    assert bad.max_steps is None or bad.global_step < bad.max_steps
    assert "failed runs: 2" in result.stdout

    tracker, logged = mlflow_runs(folder)
    by_rf_id = {run.data.tags["rf.run_id"]: run for run in logged}
    assert by_rf_id["1"].info.status == "FINISHED"
    assert by_rf_id["2"].info.status == "FAILED"
    assert by_rf_id["2"].data.tags["rf.error"] == bad.error


# 5. Config errors stop `rf run` before it creates anything: tests/unit/test_bad_inputs.py, in one process.


# 6. A kill while a checkpoint is written in the background loses only that chunk.

SLOW_FSYNC = """
import os, time
_fsync = os.fsync
def slow_fsync(fd):
    time.sleep(0.5)
    _fsync(fd)
os.fsync = slow_fsync
"""
"""`sitecustomize` for `rf run` and its workers: every fsync of a checkpoint write takes 0.5 s longer."""


def test_a_kill_during_a_background_checkpoint_write_resumes_as_if_uninterrupted(
    trained_sweep: Sweep, tmp_path: Path
) -> None:
    config, reference = trained_sweep
    folder = reference.parent / "killed-in-write"
    (tmp_path / "sitecustomize.py").write_text(SLOW_FSYNC)
    slow = {**os.environ, "PYTHONPATH": python_path_with(tmp_path)}
    process = subprocess.Popen(
        [str(RF), "run", str(config), "name=killed-in-write"],
        cwd=REPO_ROOT,
        env=slow,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def writing() -> list[Path]:
        """Checkpoints being written, once two chunks are recorded."""
        if not (folder / "state.db").exists() or sum(run.chunks_done for run in stored_runs(folder)) < 2:
            return []
        return list(folder.glob("runs/*/checkpoints/.staging/checkpoint-*/*"))

    deadline = time.monotonic() + 300
    while not (staged := writing()):
        assert process.poll() is None and time.monotonic() < deadline, "no background write to interrupt"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)

    recorded = {run.id: run.global_step for run in stored_runs(folder)}
    for interrupted in {path.parent for path in staged}:
        run_id, step = int(interrupted.parents[2].name), int(interrupted.name.split("-")[1])
        assert recorded[run_id] < step, "a chunk was recorded before its checkpoint was durable"

    run_rf("run", config, "name=killed-in-write", expect=0)
    assert [run.state for run in stored_runs(folder)] == ["completed"] * 4
    for key in ("loss", "learning_rate"):
        assert_same_series(stored_series(reference, key), stored_series(folder, key), key)


# 7. A full disk pauses the sweep; no run fails, and a plain `rf run` continues it.

FULL_DISK_WHILE_FLAGGED = """
import errno, os
_fsync = os.fsync
def full_disk_fsync(fd):
    if os.path.exists({flag!r}):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    _fsync(fd)
os.fsync = full_disk_fsync
"""
"""`sitecustomize` for `rf run` and its workers: while the flag file exists, writing a checkpoint
durably fails as on a full disk."""


def test_a_full_disk_pauses_the_sweep_and_a_plain_rf_run_continues_it(
    trained_sweep: Sweep, tmp_path: Path
) -> None:
    config, reference = trained_sweep
    folder = reference.parent / "full-disk"
    flag = tmp_path / "disk-is-full"
    (tmp_path / "sitecustomize.py").write_text(FULL_DISK_WHILE_FLAGGED.format(flag=str(flag)))
    process = subprocess.Popen(
        [str(RF), "run", str(config), "name=full-disk", "lora.r=4"],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": python_path_with(tmp_path)},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 300
    while not (folder / "state.db").exists() or sum(run.chunks_done for run in stored_runs(folder)) < 2:
        assert process.poll() is None and time.monotonic() < deadline, (
            "the sweep ended before its disk filled"
        )
        time.sleep(0.05)
    flag.touch()
    out, err = process.communicate(timeout=300)
    assert process.returncode == 75, f"exit {process.returncode}\n{out[-3000:]}\n{err[-3000:]}"
    assert "paused: no space left on device; no run failed." in " ".join(out.split())
    assert "Traceback" not in err
    paused = stored_runs(folder)
    assert [run.state for run in paused] == ["ready", "ready"] and all(run.error is None for run in paused)
    assert 0 < sum(run.chunks_done for run in paused) < 8

    flag.unlink()
    run_rf("run", config, "name=full-disk", "lora.r=4", expect=0)
    assert [run.state for run in stored_runs(folder)] == ["completed"] * 2
    expected = series_by_settings(reference, "loss")
    finished = series_by_settings(folder, "loss")
    assert_same_series({key: expected[key] for key in finished}, finished, "loss")
