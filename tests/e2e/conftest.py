"""End-to-end setup: the real `rf` CLI in a subprocess, tiny sweeps written to a temporary folder.

Every sweep here trains `rf-tiny` on 136 chatterbot rows (122 train + 14 eval, batch 8 = 16 steps
per run), so one `rf run` of four runs takes about 30 s on 2 CPU cores, most of it start-up.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
RF = Path(sys.executable).parent / "rf"
RF_TIMEOUT_S = 300  # a hung worker fails the test instead of the whole session


def sweep_config(experiments_dir: Path, name: str) -> dict[str, Any]:
    """Four runs (2 learning rates x 2 LoRA ranks) whose warmup (8 steps) outlasts the first chunk
    (16 steps / 4 chunks: boundaries 4, 8, 12, 16), with LoRA dropout so the RNG matters."""
    return {
        "name": name,
        "trainer": "sft",
        "model": {"name": "rf-tiny"},
        "data": {
            "train": {"source": "recipes.qa_data:chatterbot_qa", "select": 136, "shuffle_seed": 0},
            "eval_fraction": 0.1,
        },
        "lora": {
            "r": {"grid": [4, 8]},
            "lora_alpha": 16,
            "lora_dropout": 0.1,
            "target_modules": "all-linear",
        },
        "training": {
            "learning_rate": {"grid": [1.0e-3, 3.0e-3]},
            "lr_scheduler_type": "linear",
            "warmup_steps": 8,
            "per_device_train_batch_size": 8,
            "per_device_eval_batch_size": 16,
            "max_length": 64,
            "num_train_epochs": 1,
        },
        "num_chunks": 4,
        "seed": 0,
        "experiments_dir": str(experiments_dir),
    }


def write_yaml(path: Path, config: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def run_rf(*args: str | Path, expect: int | None = None) -> subprocess.CompletedProcess[str]:
    """`rf ARGS` from the repository root (so `recipes` imports), inheriting RF_CACHE_DIR; with
    `expect`, fails the test with the command's output unless it exits with that code."""
    result = subprocess.run(
        [str(RF), *map(str, args)],
        cwd=REPO_ROOT,
        env=os.environ,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=RF_TIMEOUT_S,
        check=False,
    )
    if expect is not None:
        assert result.returncode == expect, describe(result)
    return result


def describe(result: subprocess.CompletedProcess[str]) -> str:
    """The tail of a finished command's output, for assertion messages."""
    return (
        f"exit {result.returncode}\n--- stdout\n{result.stdout[-3000:]}\n--- stderr\n{result.stderr[-3000:]}"
    )


@pytest.fixture
def rf() -> Callable[..., subprocess.CompletedProcess[str]]:
    """Runs `rf ARGS` (see `run_rf`)."""
    return run_rf


@pytest.fixture
def write_sweep() -> Callable[..., Path]:
    """Writes the four-run sweep, with top-level keys changed, to a YAML file; returns its path."""

    def write(path: Path, experiments_dir: Path, name: str, **changes: Any) -> Path:
        return write_yaml(path, {**sweep_config(experiments_dir, name), **changes})

    return write


GENERATION_METRICS = {
    "metrics": ["recipes.qa_metrics:token_f1"],
    "generate": {"max_new_tokens": 8, "num_samples": 8, "do_sample": True},
}
"""Sampled, so generating draws from the random generators that training uses too."""


@pytest.fixture(scope="module")
def trained_sweep(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The four-run sweep trained once by `rf run` with one worker: (config file, experiment folder).
    It scores generation metrics at every chunk boundary.

    Shared by the tests of one module: later tests train variants of it (other chunk counts, two
    workers) and compare their runs to these."""
    folder = tmp_path_factory.mktemp("sweep")
    experiments = folder / "experiments"
    config = write_yaml(
        folder / "sweep.yaml", {**sweep_config(experiments, "sweep"), "eval": GENERATION_METRICS}
    )
    run_rf("run", config, expect=0)
    return config, experiments / "sweep"
