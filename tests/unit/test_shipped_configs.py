"""The shipped sweeps: every one starts with the header `rf configs` reads (what it shows, the exact
command that runs it, its wall time here), `rf configs` lists them all, and `rf cp` copies one into a
file of the user's that plans the same runs under the copy's own name."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rfcli.cli.app import app
from rfcli.config.shipped import WALL_TIME, read_shipped, shipped_configs, shipped_folder

CONFIGS = sorted(Path("configs").glob("*.yaml"))
runner = CliRunner()


def test_the_shipped_folder_is_the_checkouts_configs() -> None:
    assert shipped_folder() == Path("configs").resolve()
    assert [config.path for config in shipped_configs()] == [path.resolve() for path in CONFIGS]


@pytest.mark.parametrize("path", CONFIGS, ids=lambda path: path.name)
def test_every_shipped_config_starts_with_its_header(path: Path) -> None:
    config = read_shipped(path)
    assert config.header and len(config.header) >= 3, "no comment header"
    assert config.summary and len(config.summary) <= 100, "the first line says what it shows, in one line"
    assert config.commands, "no command line (`#   rf run configs/...`)"
    assert config.commands[0] == f"rf run configs/{path.name}", "the first command runs this very file"
    assert config.wall_time, f"no '{WALL_TIME}...' line"
    commands = [index for index, line in enumerate(config.header) if line.lstrip("# ").startswith("rf ")]
    wall = next(index for index, line in enumerate(config.header) if line.startswith(WALL_TIME))
    assert min(commands) > 0 and wall > max(commands), "summary, then commands, then the wall time"


def test_rf_configs_lists_every_shipped_sweep_with_its_trainer_model_and_runs() -> None:
    result = runner.invoke(app, ["configs"], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    rows = {line.split("│")[1].strip(): line for line in result.output.splitlines() if line.count("│") == 7}
    assert set(rows) >= {path.stem for path in CONFIGS}
    cells = [cell.strip() for cell in rows["quickstart-grpo"].split("│")[1:-1]]
    assert cells[:4] == ["quickstart-grpo", "grpo", "rf-tiny-math", "4"]
    assert "rf cp NAME MY-SWEEP.yaml" in result.output


def test_rf_cp_copies_a_sweep_that_plans_the_same_runs_under_its_own_name(tmp_path: Path) -> None:
    from rfcli.config.plan import compile_plan

    result = runner.invoke(app, ["cp", "quickstart", str(tmp_path / "my-sweep")])
    assert result.exit_code == 0, result.output
    copy = tmp_path / "my-sweep.yaml"
    assert (
        result.output == f"copied quickstart to {copy} (experiment 'my-sweep'); run it with: rf run {copy}\n"
    )
    copied = read_shipped(copy)
    assert copied.commands[0] == f"rf run {copy}"
    assert "recipes.qa_data:chatterbot_qa" in copy.read_text()  # module names as shipped
    shipped, mine = compile_plan(Path("configs/quickstart.yaml"), []), compile_plan(copy, [])
    assert mine.name == "my-sweep"
    assert [{**run.raw, "name": "quickstart"} for run in mine.runs] == [run.raw for run in shipped.runs]


def test_rf_cp_into_a_folder_keeps_the_shipped_file_name(tmp_path: Path) -> None:
    assert runner.invoke(app, ["cp", "quickstart-dpo.yaml", str(tmp_path)]).exit_code == 0
    assert read_shipped(tmp_path / "quickstart-dpo.yaml").settings["name"] == "quickstart-dpo"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["cp", "quickstrat", "{tmp}/a.yaml"],
            "no shipped config named 'quickstrat' (did you mean 'quickstart'?)",
        ),
        (
            ["cp", "quickstart", "{tmp}/taken.yaml"],
            "already exists; give a new file name (rf cp never overwrites)",
        ),
        (["cp", "quickstart", "{tmp}/nowhere/a.yaml"], "nowhere is not a folder"),
        (["cp", "quickstart", "{tmp}/a.json"], "give a name ending in .yaml"),
    ],
)
def test_rf_cp_refuses_what_it_cannot_do_and_writes_nothing(
    tmp_path: Path, args: list[str], message: str
) -> None:
    (tmp_path / "taken.yaml").write_text("mine\n")
    result = runner.invoke(app, [arg.format(tmp=tmp_path) for arg in args])
    assert result.exception is not None and message in str(result.exception)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["taken.yaml"]
    assert (tmp_path / "taken.yaml").read_text() == "mine\n"


def test_rf_configs_loads_no_training_library() -> None:
    code = (
        "import sys\nfrom rfcli.cli.app import main\n"
        "try:\n    main(['configs'])\nexcept SystemExit:\n    pass\n"
        "heavy = ('torch', 'transformers', 'trl', 'omegaconf', 'mlflow')\n"
        "print([m for m in heavy if m in sys.modules], file=sys.stderr)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stderr.strip() == "[]" and "quickstart" in result.stdout
