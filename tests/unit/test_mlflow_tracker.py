"""MlflowTracker against a real SQLite MLflow store in a temporary folder."""

from __future__ import annotations

import math
import threading
from pathlib import Path
from typing import Any

import pytest

from rfcli.config.plan import flatten
from rfcli.tracking.mlflow_tracker import (
    MAX_PARAM_VALUE_LENGTH,
    MlflowTracker,
    create_whole,
    default_tracking_uri,
    remember_tracking_uri,
    tracking_uri_for,
)

NESTED_CONFIG: dict[str, Any] = {
    "trainer": "sft",
    "model": {"name": "tiny-llama", "dtype": "float32"},
    "lora": {"r": 8, "alpha": 16, "target_modules": ["q_proj", "v_proj"]},
    "training": {"learning_rate": 3e-4, "max_steps": 1250, "gradient_checkpointing": False},
}


@pytest.fixture(scope="module")
def tracker(tmp_path_factory: pytest.TempPathFactory) -> MlflowTracker:
    # One store for the module: creating its schema takes about 1.5 s.
    folder = tmp_path_factory.mktemp("experiment")
    return MlflowTracker(default_tracking_uri(folder), "tracker-tests")


def client_for(tracker: MlflowTracker) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=tracker.tracking_uri)


def test_default_tracking_uri_is_an_absolute_sqlite_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert default_tracking_uri(Path("exp")) == f"sqlite:///{tmp_path.resolve()}/exp/mlflow.db"


def test_tracking_uri_is_remembered_only_when_not_the_default(tmp_path: Path) -> None:
    assert tracking_uri_for(tmp_path) == default_tracking_uri(tmp_path)
    remember_tracking_uri(tmp_path, default_tracking_uri(tmp_path))
    assert not (tmp_path / "tracking_uri").exists()  # the folder stays movable

    remember_tracking_uri(tmp_path, "http://mlflow.example:5000")
    assert tracking_uri_for(tmp_path) == "http://mlflow.example:5000"
    remember_tracking_uri(tmp_path, default_tracking_uri(tmp_path))
    assert tracking_uri_for(tmp_path) == default_tracking_uri(tmp_path)


def test_fresh_store_is_quiet_and_experiment_is_reused_by_name(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    uri = default_tracking_uri(tmp_path)
    first = MlflowTracker(uri, "same-name")
    second = MlflowTracker(uri, "same-name")
    other = MlflowTracker(uri, "other-name")

    assert first.experiment_id == second.experiment_id != other.experiment_id
    assert (tmp_path / "mlflow.db").is_file()
    out, err = capfd.readouterr()
    assert (out, err) == ("", "")  # no "Creating initial MLflow database tables..." on the terminal
    artifacts = client_for(first).get_experiment(first.experiment_id).artifact_location
    assert artifacts == (tmp_path.resolve() / "mlartifacts").as_uri()  # not ./mlruns of the cwd


def test_an_exit_while_a_new_store_is_built_leaves_no_store_then_the_next_open_builds_it_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The opening thread does not hold the process up at exit (Ctrl-C during start-up), so it may
    die at any step of building a new store: a half-made `mlflow.db` would break every later open."""
    from mlflow.tracking import MlflowClient

    path = tmp_path / "mlflow.db"

    def dies_midway(client: MlflowClient, **kwargs: Any) -> None:
        Path(client.tracking_uri.removeprefix("sqlite:///")).write_bytes(b"SQLite format 3\x00 half")
        raise SystemExit("the process ended here")

    with monkeypatch.context() as patch:
        patch.setattr(MlflowClient, "search_experiments", dies_midway)
        with pytest.raises(SystemExit):
            create_whole(path)
    assert not path.exists()
    assert [stale.name for stale in tmp_path.iterdir()][0].startswith(".mlflow.db.")

    tracker = MlflowTracker(default_tracking_uri(tmp_path), "after-the-exit")
    assert tracker.experiment_id
    assert [found.name for found in tmp_path.iterdir()] == ["mlflow.db"]  # the half-made one is gone
    opener = [thread for thread in threading.enumerate() if thread.name == "rf-mlflow-open"]
    assert all(thread.daemon for thread in opener)


def test_start_run_logs_flattened_params_and_tags(tracker: MlflowTracker) -> None:
    params = flatten(NESTED_CONFIG)
    params["notes"] = "x" * (MAX_PARAM_VALUE_LENGTH + 500)
    params.update({f"extra.p{index:03d}": index for index in range(250)})  # 3 batches of <= 100

    run_id = tracker.start_run("run-1", params, {"rf.run_id": "1", "rf.trainer": "sft"})
    run = client_for(tracker).get_run(run_id)

    logged = run.data.params
    assert len(logged) == len(params)
    assert logged["lora.r"] == "8"
    assert logged["training.learning_rate"] == "0.0003"
    assert logged["training.gradient_checkpointing"] == "False"
    assert logged["lora.target_modules"] == '["q_proj", "v_proj"]'
    assert logged["extra.p249"] == "249"
    assert logged["notes"] == "x" * MAX_PARAM_VALUE_LENGTH
    assert run.info.run_name == "run-1"
    assert run.info.status == "RUNNING"
    assert run.data.tags["rf.run_id"] == "1"
    assert run.data.tags["rf.trainer"] == "sft"


def test_log_metrics_in_batches_of_1000_and_read_back(
    tracker: MlflowTracker, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id = tracker.start_run("run-metrics", {"lora.r": 8}, {})
    rows = [
        (step, key, step * factor) for step in range(1250) for key, factor in (("loss", 0.5), ("lr", 1e-6))
    ]
    assert len(rows) == 2500

    batches: list[int] = []
    log_batch = tracker._client.log_batch

    def counting_log_batch(run_id: str, **kwargs: Any) -> Any:
        batches.append(len(kwargs.get("metrics", ())))
        return log_batch(run_id, **kwargs)

    monkeypatch.setattr(tracker._client, "log_batch", counting_log_batch)
    tracker.log_metrics(run_id, rows)

    assert batches == [1000, 1000, 500]
    assert tracker.metric_history(run_id, "loss") == [(step, step * 0.5) for step in range(1250)]
    assert tracker.metric_history(run_id, "lr") == [(step, step * 1e-6) for step in range(1250)]
    assert tracker.metric_history(run_id, "missing") == []


def test_nan_and_infinite_metrics_do_not_crash(tracker: MlflowTracker) -> None:
    run_id = tracker.start_run("run-nan", {}, {})
    tracker.log_metrics(
        run_id, [(0, "loss", 1.0), (1, "loss", math.nan), (2, "loss", math.inf), (3, "loss", 0.5)]
    )

    history = dict(tracker.metric_history(run_id, "loss"))
    assert history[0] == 1.0 and history[3] == 0.5
    assert math.isnan(history[1])
    assert history[2] > 1e308  # MLflow's SQL store keeps +inf as the largest float


def test_metric_and_tag_keys_mlflow_refuses_are_made_safe(tracker: MlflowTracker) -> None:
    run_id = tracker.start_run("run-keys", {"reward_funcs[0]": "<lambda>"}, {})
    tracker.log_metrics(run_id, [(1, "rewards/<lambda>/mean", 0.25)])
    tracker.set_tags(run_id, {"rf.note<1>": "ok"})

    assert tracker.metric_history(run_id, "rewards/<lambda>/mean") == [(1, 0.25)]
    run = client_for(tracker).get_run(run_id)
    assert run.data.metrics == {"rewards/_lambda_/mean": 0.25}
    assert run.data.params == {"reward_funcs_0_": "<lambda>"}
    assert run.data.tags["rf.note_1_"] == "ok"


def test_set_tags_and_end_run_status(tracker: MlflowTracker) -> None:
    run_id = tracker.start_run("run-end", {}, {"rf.state": "pending"})
    tracker.set_tags(run_id, {"rf.state": "stopped", "rf.chunks_done": "3"})
    tracker.end_run(run_id, "KILLED")

    run = client_for(tracker).get_run(run_id)
    assert run.data.tags["rf.state"] == "stopped"
    assert run.data.tags["rf.chunks_done"] == "3"
    assert run.info.status == "KILLED"
    assert run.info.end_time is not None


@pytest.mark.parametrize("status", ["FINISHED", "FAILED"])
def test_end_run_accepts_finished_and_failed(tracker: MlflowTracker, status: str) -> None:
    run_id = tracker.start_run(f"run-{status.lower()}", {}, {})
    tracker.end_run(run_id, status)
    assert client_for(tracker).get_run(run_id).info.status == status


def test_end_run_refuses_an_unknown_status(tracker: MlflowTracker) -> None:
    run_id = tracker.start_run("run-bad-status", {}, {})
    with pytest.raises(ValueError, match="FINISHED, FAILED, KILLED"):
        tracker.end_run(run_id, "DONE")
