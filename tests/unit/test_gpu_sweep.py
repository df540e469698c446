"""The GPU benchmark's sweeps are valid plans of the sizes it reports on, and its table states the
goal's ratio: checked here, on any machine, so that the device check runs as it is where a GPU is."""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
import yaml

from rfcli.config.plan import compile_plan

REPO_ROOT = Path(__file__).resolve().parents[2]


def benchmark(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "benchmarks" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(("configs", "lora"), [(1, True), (4, True), (8, True), (2, False)])
def test_each_sweep_is_a_plan_of_that_many_full_length_runs(
    configs: int, lora: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gpu_sweep = benchmark("gpu_sweep")
    monkeypatch.chdir(REPO_ROOT)
    args = argparse.Namespace(
        model="rf-tiny",
        dtype="float32",
        out=tmp_path,
        steps=16,
        full_steps=8,
        num_chunks=4,
        batch_size=8,
        max_length=512,
    )
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(gpu_sweep.sweep_config(args, configs, lora)))
    plan = compile_plan(path, [])
    assert len(plan.runs) == configs
    assert all((run.config.lora is not None) == lora for run in plan.runs)
    assert plan.runs[0].config.data.train.kwargs["words"] >= 512  # rows longer than max_length


def test_the_table_gives_each_sweep_against_one_config_alone() -> None:
    gpu_sweep = benchmark("gpu_sweep")
    row = {"runs": 1, "seconds": 60.0, "tokens_per_second_wall": 1.0, "gpu_utilization": 90.0}
    results = {
        "lora-1": {**row, "tokens_per_second_training": 1000.0, "peak_gpu_memory_mib": 10_000.0},
        "lora-8": {**row, "runs": 8, "tokens_per_second_training": 950.0, "peak_gpu_memory_mib": 10_700.0},
        "full-2": {**row, "runs": 2, "tokens_per_second_training": 900.0, "peak_gpu_memory_mib": 40_000.0,
                   "park_ms_median": 510.0, "unpark_ms_median": 480.0},
    }  # fmt: skip
    table = gpu_sweep.table(results, [1, 8])
    assert "| lora-8 | 8 | 60 | 950 | 0.95 |" in table
    assert "| 510 / 480 |" in table
    assert "GPU memory per parked LoRA run: 100 MiB" in table
