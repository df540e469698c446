"""`rf plan` through the real command line: the table, the totals, --json, and a user error."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

RF = Path(sys.executable).parent / "rf"
REPO_ROOT = Path(__file__).resolve().parents[2]


def rf(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(RF), *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=False
    )


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
