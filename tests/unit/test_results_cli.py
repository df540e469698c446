"""`rf ls`, `rf compare`, `rf report`, `rf export` and `rf ctl retry` through the real command line:
what they print, and one clear line with exit status 2 for bad input. No training here (see the
end-to-end tests for that): the sweep is written straight into a state store."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from rfcli.cli.app import app
from rfcli.cli.export import RankMode, best_run
from rfcli.config.policy import POLICY_META
from rfcli.config.schema import PolicyConfig
from rfcli.errors import UserError
from rfcli.results.experiment import ExperimentResults, load_results
from rfcli.store.checksums import write_checksums
from rfcli.store.database import ExperimentStore
from rfcli.store.layout import STATE_DB
from tests.unit.results_fixtures import write_sweep

RF = Path(sys.executable).parent / "rf"
runner = CliRunner()


@pytest.fixture
def experiments(tmp_path: Path) -> Path:
    write_sweep(tmp_path / "experiments")
    return tmp_path / "experiments"


def rf(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(RF), *map(str, args)], capture_output=True, text=True, check=False, timeout=60)


def invoke(*args: str | Path) -> str:
    result = runner.invoke(app, [str(arg) for arg in args], env={"COLUMNS": "100"})
    assert result.exit_code == 0, result.output
    return result.output


def test_ls_lists_each_experiment_with_its_runs_by_state(experiments: Path) -> None:
    write_sweep(experiments, "second")
    out = invoke("ls", "--dir", experiments)
    rows = [line for line in out.splitlines() if "completed" in line]
    assert len(rows) == 2
    assert all("2 completed · 1 stopped · 1 failed" in row for row in rows)
    assert {row.split()[1] for row in rows} == {"sweep", "second"}


def test_ls_of_an_empty_folder_says_so(tmp_path: Path) -> None:
    assert "no experiments in" in invoke("ls", "--dir", tmp_path)


def test_compare_shows_the_differing_settings_and_latest_metrics_side_by_side(experiments: Path) -> None:
    out = invoke("compare", "1", "3", "--dir", experiments)
    lines = {line.split()[1]: line.split()[2:] for line in out.splitlines() if line.startswith("│")}
    assert lines["lora.r"] == ["│", "8", "│", "32", "│"]
    assert "training.learning_rate" not in lines  # the same for runs 1 and 3
    assert lines["eval_loss"] == ["│", "2.5", "│", "2.3", "│"]
    assert lines["state"] == ["│", "completed", "│", "completed", "│"]


def test_report_writes_the_picture_and_the_summary(experiments: Path, tmp_path: Path) -> None:
    out = invoke("report", "sweep", "--dir", experiments, "--out", tmp_path / "report")
    assert "best run by eval loss: 2 (r=8 lr=0.003), eval loss 2.1" in out
    assert (tmp_path / "report" / "losses.png").read_bytes()[:4] == b"\x89PNG"
    assert "**run 2**" in (tmp_path / "report" / "summary.md").read_text()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["compare", "1", "9"], "no run 9 in "),
        (["compare", "1"], "compare needs two or more different run ids"),
        (["compare", "1", "2", "-e", "swep"], "no experiment named 'swep' (did you mean 'sweep'?)"),
        (["report", "nope"], "no experiment named 'nope'"),
        (["export", "9", "--out", "{tmp}/out"], "experiment 'sweep' has no run 9; its runs are: 1, 2, 3, 4"),
        (["export", "--best", "--metric", "reward", "--out", "{tmp}/out"], "has logged 'reward'"),
        (["export", "1", "--best", "--out", "{tmp}/out"], "give a RUN_ID or --best (not both)"),
        (["export", "1", "--out", "{tmp}/full"], "already exists and is not an empty folder"),
        (["export", "1", "--out", "{tmp}/out"], "its checkpoint "),  # not on disk in this store
        (["ctl", "retry", "9"], "no run 9 in "),
    ],
)
def test_bad_input_is_one_clear_line_and_exit_2(
    experiments: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "file").write_text("x")
    result = rf(*(arg.format(tmp=tmp_path) for arg in args), "--dir", experiments)
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and message in result.stderr, result.stderr
    assert not (tmp_path / "out").exists()


def test_export_of_a_damaged_checkpoint_names_the_file_and_writes_nothing(
    experiments: Path, tmp_path: Path
) -> None:
    checkpoint = experiments / "sweep" / "runs" / "1" / "checkpoints" / "checkpoint-16"
    (checkpoint / "run_1").mkdir(parents=True)
    (checkpoint / "run_1" / "adapter_model.safetensors").write_bytes(b"weights!")
    write_checksums(checkpoint)
    (checkpoint / "run_1" / "adapter_model.safetensors").write_bytes(b"weig")
    result = rf("export", "1", "--out", tmp_path / "out", "--dir", experiments)
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    damaged = checkpoint / "run_1" / "adapter_model.safetensors"
    assert f"run 1 cannot be exported: {damaged} is 4 bytes where 8 were written" in result.stderr
    assert not (tmp_path / "out").exists()


def test_ls_of_a_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    result = rf("ls", "--dir", tmp_path / "nowhere")
    assert result.returncode == 2 and "no experiments folder" in result.stderr


def test_retry_of_a_run_that_did_not_fail_is_refused(experiments: Path) -> None:
    result = rf("ctl", "retry", "1", "--dir", experiments)
    assert result.returncode == 2
    assert "retry run 1: refused: run 1 is completed; only a failed run is retried" in result.stderr


def test_results_commands_load_no_training_library() -> None:
    code = (
        "import sys; import rfcli.cli.app; "
        "heavy = ('torch', 'transformers', 'trl', 'peft', 'mlflow', 'matplotlib', 'optuna', 'scipy'); "
        "print([m for m in heavy if m in sys.modules])"
    )
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert output.strip() == "[]"


def with_perplexity(experiments: Path, policy: dict[str, Any] | None) -> ExperimentResults:
    """The sweep's runs 1-3 with an eval perplexity (run 3 the lowest), under `policy` if given."""
    with ExperimentStore(experiments / "sweep" / STATE_DB) as store:
        for run_id, value in ((1, 9.0), (2, 7.0), (3, 5.0)):
            store.add_metrics(run_id, [(16, "eval_perplexity", value)])
        if policy is not None:
            store.set_meta(POLICY_META, json.dumps(dataclasses.asdict(PolicyConfig(**policy))))
    return load_results(experiments / "sweep")


def test_best_ranks_by_the_policy_s_mode_when_it_judges_by_that_metric(
    experiments: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results = with_perplexity(experiments, {"name": "asha", "metric": "eval_perplexity", "mode": "min"})
    assert best_run(results, "eval_perplexity").run.id == 3
    assert capsys.readouterr().out == (
        "best run by eval_perplexity (lowest first: the mode of the experiment's asha policy): 3"
        " (eval_perplexity 5)\n"
    )
    assert best_run(results, "eval_perplexity", RankMode.max).run.id == 1  # --mode overrules it


def test_best_by_a_metric_no_policy_judges_by_needs_mode(
    experiments: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results = with_perplexity(experiments, policy=None)
    with pytest.raises(
        UserError, match="cannot tell which way 'eval_perplexity' ranks.*--mode min or --mode max"
    ):
        best_run(results, "eval_perplexity")
    assert best_run(results, "eval_perplexity", RankMode.min).run.id == 3
    assert best_run(results, "eval_loss").run.id == 2  # TRL's loss: lowest first
    assert "(lowest first: a loss)" in capsys.readouterr().out.splitlines()[-1]
