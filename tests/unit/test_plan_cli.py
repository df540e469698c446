"""`rf plan` and `rf run` through the real command line: the table, the totals, --json, user errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

RF = Path(sys.executable).parent / "rf"
REPO_ROOT = Path(__file__).resolve().parents[2]


def rf(*args: str, cwd: Path = REPO_ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(RF), *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


def test_plan_prints_one_row_per_run_with_the_values_that_differ() -> None:
    result = rf("plan", "configs/sft-lora-sweep.yaml", "num_chunks=8")
    assert result.returncode == 0, result.stderr
    for text in (
        "lora.r",
        "training.learning_rate",
        "0.0001",
        "4 runs",
        "8 chunks per epoch",
        "512 training steps",
    ):
        assert text in result.stdout
    assert "model.name" not in result.stdout  # the same in every run


def test_a_one_run_plan_lists_its_settings_unfolded_and_says_1_run() -> None:
    result = rf("plan", "configs/quickstart.yaml", "lora={r: 8}", "training.learning_rate=1e-3")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].strip() == "quickstart: SFT run plan from configs/quickstart.yaml"  # not folded
    assert lines[-1].strip() == "1 run · 4 chunks per epoch · training steps depend on the data size"
    rows = {line.split("│")[1].strip(): line.split("│")[2].strip() for line in lines if line.count("│") == 3}
    assert rows["training.learning_rate"] == "0.001"
    assert rows["lora.r"] == "8"
    assert "search" not in rows  # an empty section


def test_plan_json_has_every_resolved_config() -> None:
    result = rf("plan", "configs/quickstart.yaml", "--json")
    assert result.returncode == 0, result.stderr
    runs = json.loads(result.stdout)
    assert [run["id"] for run in runs] == [1, 2, 3, 4]
    assert {run["config"]["training"]["learning_rate"] for run in runs} == {3e-3, 1e-3}
    assert all(run["config"]["model"]["name"] == "rf-tiny" for run in runs)


def test_plan_error_is_one_line_with_exit_code_2() -> None:
    result = rf("plan", "configs/quickstart.yaml", "lora.grid.0.rank=4")
    assert result.returncode == 2
    assert "configs/quickstart.yaml: lora.rank: LoraConfig has no field 'rank'" in result.stderr
    assert "Traceback" not in result.stderr


def test_brackets_in_a_file_name_are_printed_as_they_are(tmp_path: Path) -> None:
    config = tmp_path / "sweep[v2].yaml"
    config.write_text((REPO_ROOT / "configs/quickstart.yaml").read_text())
    result = rf("plan", config.name, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "run plan from sweep[v2].yaml" in result.stdout
    config.write_bytes(b"name: caf\xe9\n")
    result = rf("plan", config.name, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "error: sweep[v2].yaml: not UTF-8 text (byte 0xe9 at offset 9); "
        "save it as UTF-8 (an experiment file is YAML text)"
    ]


def test_a_data_builder_that_raises_names_the_users_line_and_writes_nothing(tmp_path: Path) -> None:
    (tmp_path / "my_data.py").write_text("def rows():\n    return {'text': 'x'}['txt']\n")
    config = tmp_path / "sweep.yaml"
    config.write_text((REPO_ROOT / "configs/quickstart.yaml").read_text())
    result = rf("run", config.name, "data.train.source=my_data:rows", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "error: sweep.yaml: data.train.source: 'my_data:rows' raised KeyError: 'txt' (at my_data.py:2)"
    ]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["my_data.py", "sweep.yaml"]
