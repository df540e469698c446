"""`rf plan --estimate --calibrate` times real steps of the plan's first runs through the worker's
code, and says what the sweep will take with and without its policy's expected stops."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import run_rf

pytestmark = pytest.mark.e2e


def test_rf_plan_estimate_with_calibration_times_real_steps_and_the_policys_stops() -> None:
    overrides = [
        "data.train.select=240",
        "training.max_steps=16",
        "training.per_device_train_batch_size=8",
        "lora.grid.1.r=16",
        "policy.name=asha",
    ]
    result = run_rf("plan", "configs/quickstart.yaml", *overrides, "--estimate", "--calibrate", expect=0)
    out = " ".join(result.stdout.split())
    assert "quickstart: what the plan costs (4 runs)" in out
    assert "the sweep: 64 optimizer steps in 16 chunks," in out  # 4 runs of 16 steps in 4 chunks
    assert "calibrated here: 3 steps of run 1 at" in out
    assert "wall time: about" in out and "with asha's expected stops: about" in out
    rows = [
        [cell.strip() for cell in line.split("│")] for line in result.stdout.splitlines() if line[:1] == "│"
    ]
    assert [row[4] for row in rows] == ["16"] * 4  # steps
