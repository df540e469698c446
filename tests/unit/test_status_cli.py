"""`rf status`: the runs table, recent events, --json, clear errors, and a torch-free import."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from rfcli.cli.status import status_command
from rfcli.errors import NotFoundError
from rfcli.store.database import ExperimentStore
from rfcli.store.experiments import experiment_folder
from rfcli.store.layout import STATE_DB
from rfcli.ui.tables import format_time

app = typer.Typer()
app.command()(status_command)
runner = CliRunner()


@pytest.fixture
def experiments(tmp_path: Path) -> Path:
    """An experiment 'lora-sweep' with four runs in different states."""
    with ExperimentStore(experiment_folder(tmp_path, "lora-sweep") / STATE_DB) as store:
        for run_id in (1, 2, 3, 4):
            store.add_run(
                run_id, {"lora": {"r": 4 * run_id}}, f"fp{run_id}", name=f"r{4 * run_id}", cause="plan"
            )
            store.set_plan_totals(run_id, total_chunks=8, max_steps=400)
        store.set_state(1, "running", cause="scheduler", worker=0)
        store.record_chunk(
            1,
            chunks_done=3,
            global_step=150,
            checkpoint="runs/1/chunk-3",
            metrics=[(100, "loss", 2.5), (150, "loss", 1.8765), (150, "eval_loss", 1.9123)],
        )
        store.set_state(4, "running", cause="scheduler", worker=1)
        store.set_state(4, "ready", cause="scheduler")
        store.set_state(2, "stopped", cause="user")
        store.set_state(3, "running", cause="scheduler", worker=1)
        store.set_state(3, "failed", cause="worker 1", error="loss is NaN at step 12")
        store.record_chunk(3, chunks_done=0, global_step=12, checkpoint="c", metrics=[(12, "loss", math.nan)])
    return tmp_path


def invoke(*args: str):
    return runner.invoke(app, list(args), env={"COLUMNS": "120"})


def test_table_shows_every_run_with_progress_step_and_losses(experiments: Path) -> None:
    result = invoke("--dir", str(experiments))
    assert result.exit_code == 0, result.output
    out = result.output
    assert "lora-sweep: 4 runs" in out
    row = next(line for line in out.splitlines() if line.split()[:2] == ["1", "4"])
    for cell in ("running", "3/8", "150/400", "1.877", "1.912"):
        assert cell in row
    row3 = next(line for line in out.splitlines() if line.split()[:2] == ["3", "12"])
    assert "nan" in row3
    assert "1 running · 1 ready · 1 stopped · 1 failed" in out  # in the order runs move through


def test_recent_events_below_the_table_oldest_first(experiments: Path) -> None:
    out = invoke("lora-sweep", "--dir", str(experiments)).output
    events = out[out.index("recent events") :]
    assert "run 3 failed  by worker 1: loss is NaN at step 12" in events
    assert "run 4 ready" not in events  # the scheduler's chunk hand-offs are recorded, not shown
    assert events.index("run 1 created") < events.index("run 2 stopped") < events.index("run 3 failed")
    assert len(events.strip().splitlines()) == 1 + 6  # heading + the 6 notable of 10 events


def test_a_runs_warning_stays_listed_under_the_table_and_in_json(experiments: Path) -> None:
    folder = experiment_folder(experiments, "lora-sweep")
    with ExperimentStore(folder / STATE_DB) as store:
        store.add_event(4, "warning", cause="rf run", detail="no learning signal in chunk 1: the loss was 0")
        for _ in range(20):  # more news than the recent events show
            store.add_event(None, "started", cause="rf run")
    out = invoke("--dir", str(experiments)).output
    assert "warnings\n  run 4: no learning signal in chunk 1: the loss was 0\n" in out
    assert "warning  by" not in out[out.index("recent events") :]  # listed once, above
    document = json.loads(invoke("--dir", str(experiments), "--json").output)
    assert [run["warning"] for run in document["runs"]] == [
        None,
        None,
        None,
        "no learning signal in chunk 1: the loss was 0",
    ]


def test_a_long_event_detail_shows_its_first_line(experiments: Path) -> None:
    with ExperimentStore(experiments / "lora-sweep" / STATE_DB) as store:
        store.set_state(4, "running", cause="scheduler", worker=0)
        store.set_state(4, "failed", cause="worker 0", error="ValueError: bad value\n  File x.py, line 3")
    out = invoke("--dir", str(experiments)).output
    assert "run 4 failed  by worker 0: ValueError: bad value …" in out
    assert "x.py" not in out


def test_json_has_runs_and_events(experiments: Path) -> None:
    result = invoke("--dir", str(experiments), "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["experiment"] == "lora-sweep"
    runs = {run["id"]: run for run in data["runs"]}
    assert runs[1]["state"] == "running"
    assert runs[1]["progress"] == pytest.approx(3 / 8)
    assert runs[1]["latest_metrics"] == {"eval_loss": 1.9123, "loss": 1.8765}
    assert runs[1]["config"] == {"lora": {"r": 4}}
    assert runs[3]["latest_metrics"] == {"loss": None}  # NaN is not JSON
    assert runs[3]["error"] == "loss is NaN at step 12"
    assert data["events"][0]["kind"] == "failed"  # newest first, as the store gives them
    assert len(data["events"]) == 6


def test_waiting_commands_say_what_they_wait_for_and_json_has_their_outcomes(experiments: Path) -> None:
    with ExperimentStore(experiments / "lora-sweep" / STATE_DB) as store:
        stop = store.add_command("stop", 1, {}, cause="rf ctl")  # run 1 is training its chunk
        store.add_command("resume", 2, {}, cause="key")
        refused = store.add_command("resume", 4, {}, cause="rf ctl")
        store.finish_command(refused, outcome="refused", error="run 4 is ready; only a stopped run resumes")
    out = invoke("--dir", str(experiments)).output
    waiting = out[out.index("waiting commands") :].splitlines()
    assert waiting[1].endswith("stop run 1  by rf ctl: `rf run` applies it when run 1's chunk in flight ends")
    next_turn = "`rf run` applies it at its next turn; `rf status` shows its outcome"
    assert waiting[2].endswith(f"resume run 2  by key: {next_turn}")
    commands = json.loads(invoke("--dir", str(experiments), "--json").output)["commands"]
    assert [command["id"] for command in commands["waiting"]] == [stop, stop + 1]
    assert [(c["id"], c["outcome"], c["error"]) for c in commands["answered"]] == [
        (refused, "refused", "run 4 is ready; only a stopped run resumes")
    ]


def test_empty_experiment(tmp_path: Path) -> None:
    ExperimentStore(experiment_folder(tmp_path, "empty") / STATE_DB).close()
    result = invoke("--dir", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert "empty: no runs yet" in result.output


def test_no_experiment_is_a_clear_error(tmp_path: Path) -> None:
    result = invoke("--dir", str(tmp_path / "nowhere"))
    assert isinstance(result.exception, NotFoundError)
    assert "run `rf run CONFIG` first" in str(result.exception)


def test_callable_without_typer(experiments: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status_command("lora-sweep", experiments, as_json=True)
    assert json.loads(capsys.readouterr().out)["experiment"] == "lora-sweep"


def test_format_time_shows_the_date_only_for_other_days() -> None:
    assert len(format_time(time.time())) == len("14:03:27")
    assert len(format_time(time.time() - 3 * 86400)) == len("11-24 14:03:27")


def test_the_import_loads_no_training_library() -> None:
    """What keeps `rf status` fast; how fast it answers is measured by benchmarks/cli_startup.py."""
    code = (
        "import sys; import rfcli.cli.status; "
        "print([m for m in ('torch', 'transformers', 'trl', 'peft', 'datasets', 'mlflow', 'omegaconf', "
        "'optuna') if m in sys.modules])"
    )
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert output.strip() == "[]"
