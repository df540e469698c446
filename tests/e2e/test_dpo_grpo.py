"""DPO and GRPO through `rf run`: several runs on one shared base model, chunked equals unchunked,
shared reference log-probs equal a run's own, rewards that vary, and a failing run that fails alone.

DPO: 2 runs (beta 0.1 / 0.5) on rf-tiny, 104 preference pairs (9 held out, as `datasets` rounds 7.7%
up; 95 train, batch 8 = 12 steps).
GRPO: 2 runs (two reward lists) on rf-tiny-math, 24 prompts x 4 generations (batch 8 = 12 steps).
"""

from __future__ import annotations

import math
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from rfcli.store.database import ExperimentStore
from tests.e2e.conftest import write_yaml
from tests.pinned import check_pinned

pytestmark = pytest.mark.e2e

RunRf = Callable[..., subprocess.CompletedProcess[str]]
REL_TOL = 1e-5
REWARDS = "recipes.math_rewards"


def broken_reward(completions: list[Any], **kwargs: Any) -> list[float]:
    """A reward that fails at its first call: its run must fail, the others finish."""
    raise RuntimeError("this reward is broken on purpose")


def zero_reward(completions: list[Any], **kwargs: Any) -> list[float]:
    """A reward nothing can earn: its run learns nothing and must say so."""
    return [0.0 for _ in completions]


def dpo_config(experiments: Path, name: str, **changes: Any) -> dict[str, Any]:
    return {
        "name": name,
        "trainer": "dpo",
        "model": {"name": "rf-tiny"},
        "data": {
            "train": {
                "source": "recipes.preference_data:chatterbot_preferences",
                "select": 104,
                "shuffle_seed": 0,
            },
            "eval_fraction": 0.077,
        },
        "lora": {"r": 4, "lora_alpha": 16, "lora_dropout": 0.1, "target_modules": "all-linear"},
        "training": {
            "beta": {"grid": [0.1, 0.5]},
            "learning_rate": 3.0e-3,
            "lr_scheduler_type": "linear",
            "warmup_steps": 4,
            "per_device_train_batch_size": 8,
            "per_device_eval_batch_size": 8,
            "max_length": 48,
            "num_train_epochs": 1,
            **changes.pop("training", {}),
        },
        "num_chunks": 4,
        "seed": 0,
        "experiments_dir": str(experiments),
        **changes,
    }


def grpo_config(experiments: Path, name: str, **changes: Any) -> dict[str, Any]:
    return {
        "name": name,
        "trainer": "grpo",
        "model": {"name": "rf-tiny-math"},
        "data": {"train": {"source": "recipes.math_data:addition_prompts", "kwargs": {"count": 24}}},
        "lora": {"r": 8, "lora_alpha": 16, "target_modules": "all-linear"},
        "rewards": {
            "grid": [
                [f"{REWARDS}:correct_answer", f"{REWARDS}:answer_format"],
                [{"function": f"{REWARDS}:answer_format", "weight": 0.5}],
            ]
        },
        "training": {
            "learning_rate": 3.0e-3,
            "per_device_train_batch_size": 8,
            "num_generations": 4,
            "max_completion_length": 10,
            "num_train_epochs": 1,
        },
        "num_chunks": 4,
        "seed": 0,
        "experiments_dir": str(experiments),
        **changes,
    }


def train(rf: RunRf, folder: Path, config: dict[str, Any], expect: int = 0) -> Path:
    """`rf run` one config; returns its experiment folder, where its output is kept as `rf-run.out`."""
    result = rf("run", write_yaml(folder / f"{config['name']}.yaml", config), expect=expect)
    experiment = Path(config["experiments_dir"]) / config["name"]
    (experiment / "rf-run.out").write_text(result.stdout)
    return experiment


def series(
    experiment: Path, key: str, setting: Callable[[dict[str, Any]], Any]
) -> dict[Any, dict[int, float]]:
    """{run setting: {step: value}} of one metric in the state store; settings match runs across sweeps."""
    with ExperimentStore(experiment / "state.db") as store:
        return {
            setting(run.config): {step: value for step, name, value in store.metrics(run.id) if name == key}
            for run in store.runs()
        }


def assert_same(
    expected: dict[Any, dict[int, float]], actual: dict[Any, dict[int, float]], what: str
) -> None:
    assert actual.keys() == expected.keys(), what
    for run, steps in expected.items():
        assert steps, f"{what}: run {run} logged nothing"
        assert actual[run].keys() == steps.keys(), f"{what}: run {run} logged other steps"
        for step, value in steps.items():
            assert math.isclose(actual[run][step], value, rel_tol=REL_TOL, abs_tol=1e-12), (
                f"{what}: run {run} step {step}: {actual[run][step]!r} != {value!r}"
            )


def beta(config: dict[str, Any]) -> float:
    return float(config["training"]["beta"])


@pytest.fixture(scope="module")
def dpo_experiments(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The DPO pair trained three ways: 4 chunks (shared reference cache), 1 chunk, and 4 chunks with each
    run scoring the reference itself at every step (`precompute_ref_log_probs: false`)."""
    from tests.e2e.conftest import run_rf

    folder = tmp_path_factory.mktemp("dpo")
    experiments = folder / "experiments"
    return {
        "chunked": train(run_rf, folder, dpo_config(experiments, "chunked")),
        "unchunked": train(run_rf, folder, dpo_config(experiments, "unchunked", num_chunks=1)),
        "own_reference": train(
            run_rf, folder, dpo_config(experiments, "own", training={"precompute_ref_log_probs": False})
        ),
    }


@pytest.mark.parametrize("key", ["loss", "learning_rate", "eval_loss"])
def test_dpo_chunked_equals_unchunked(dpo_experiments: dict[str, Path], key: str) -> None:
    if key == "eval_loss":  # evaluated at every chunk boundary: compare at the last step, which both have
        chunked = {k: {max(v): v[max(v)]} for k, v in series(dpo_experiments["chunked"], key, beta).items()}
        unchunked = series(dpo_experiments["unchunked"], key, beta)
        assert_same(unchunked, chunked, key)
        return
    assert_same(
        series(dpo_experiments["unchunked"], key, beta), series(dpo_experiments["chunked"], key, beta), key
    )


def test_dpo_losses_equal_the_pinned_ones(dpo_experiments: dict[str, Path]) -> None:
    """One run's absolute losses, as the libraries and rf compute them today (see tests/pinned.py)."""
    for key in ("loss", "eval_loss", "rewards/margins"):
        check_pinned(f"dpo beta=0.1 {key}", series(dpo_experiments["chunked"], key, beta)[0.1])


def test_dpo_shared_reference_equals_each_run_scoring_its_own(dpo_experiments: dict[str, Path]) -> None:
    for key in ("loss", "rewards/chosen", "rewards/margins"):
        own = series(dpo_experiments["own_reference"], key, beta)
        assert_same(own, series(dpo_experiments["chunked"], key, beta), key)
    [cache] = (dpo_experiments["chunked"] / "reference-logps").iterdir()  # one reference, one scoring
    keys = [key for path in cache.iterdir() for key in torch.load(path, weights_only=True)["keys"]]
    # Each row scored once: rows whose tokens are the same (a pair truncated to the same max_length
    # prefix) are one row to the reference.
    assert len(keys) == len(set(keys)) and 90 < len(keys) <= 95 + 9
    with ExperimentStore(dpo_experiments["chunked"] / "state.db") as store:
        scored = {
            run.id: sum(value for _, key, value in store.metrics(run.id) if key.endswith("reference_rows"))
            for run in store.runs()
        }
    assert scored == {1: len(keys), 2: 0}, "the second run reads the rows the first one scored"
    lines = (dpo_experiments["chunked"] / "rf-run.out").read_text().splitlines()
    first = {run: next(line for line in lines if line.startswith(f"run {run}: chunk 1/4")) for run in (1, 2)}
    said = re.search(r" · reference log-probs of (\d+) new rows \(", first[1])
    assert said is not None and 24 <= int(said.group(1)) <= 33, first[1]  # 3 batches of 8, the 9 eval rows
    assert "reference" not in first[2]
    assert not (dpo_experiments["own_reference"] / "reference-logps").exists()


def test_dpo_runs_share_one_base_model_and_learn(dpo_experiments: dict[str, Path]) -> None:
    """Both runs trained on one worker's shared model (no 'default'/'ref' adapter trap), from the same
    reference: at step 1 the policy is the reference, so the loss is log 2 for either beta."""
    losses = series(dpo_experiments["chunked"], "loss", beta)
    assert set(losses) == {0.1, 0.5}
    for steps in losses.values():
        assert math.isclose(steps[1], math.log(2), rel_tol=1e-4)
        assert len(steps) == 12


@pytest.fixture(scope="module")
def math_model() -> Path:
    """rf-tiny-math built here (about 30 s), not inside a timed `rf run`."""
    from rfcli.models.tiny import builtin_model_path

    return builtin_model_path("rf-tiny-math")


@pytest.fixture(scope="module")
def grpo_experiments(tmp_path_factory: pytest.TempPathFactory, math_model: Path) -> dict[str, Path]:
    """The GRPO pair trained in 4 chunks and in 1."""
    from tests.e2e.conftest import run_rf

    folder = tmp_path_factory.mktemp("grpo")
    experiments = folder / "experiments"
    return {
        "chunked": train(run_rf, folder, grpo_config(experiments, "chunked")),
        "unchunked": train(run_rf, folder, grpo_config(experiments, "unchunked", num_chunks=1)),
    }


def reward_names(config: dict[str, Any]) -> tuple[str, ...]:
    return tuple(str(r if isinstance(r, str) else r["function"]) for r in config["rewards"])


BOTH_REWARDS = (f"{REWARDS}:correct_answer", f"{REWARDS}:answer_format")


def test_grpo_chunked_equals_unchunked_with_rewards_that_vary(grpo_experiments: dict[str, Path]) -> None:
    """With a fixed seed, sampling draws from generators that rf restores per run and turn, so a GRPO run
    in 4 chunks generates the same completions and takes the same steps as one in 1 chunk."""
    chunked, unchunked = grpo_experiments["chunked"], grpo_experiments["unchunked"]
    for key in ("loss", "reward", "learning_rate", "rewards/answer_format/mean"):
        assert_same(series(unchunked, key, reward_names), series(chunked, key, reward_names), key)
    correct = series(chunked, "rewards/correct_answer/mean", reward_names)
    assert [run for run, steps in correct.items() if steps] == [BOTH_REWARDS]  # each run logs its own only
    formats = series(chunked, "rewards/answer_format/mean", reward_names)[BOTH_REWARDS].values()
    assert len(set(formats)) > 1, "the format reward never varied: rf-tiny-math cannot earn reward"
    assert 0 < sum(formats) / len(formats) < 1


def test_grpo_losses_equal_the_pinned_ones(grpo_experiments: dict[str, Path]) -> None:
    """One run's absolute losses and rewards, as the libraries and rf compute them today (see
    tests/pinned.py)."""
    for key in ("loss", "reward"):
        values = series(grpo_experiments["chunked"], key, reward_names)[BOTH_REWARDS]
        check_pinned(f"grpo correct_answer+answer_format {key}", values)


@pytest.mark.usefixtures("math_model")
def test_grpo_failing_reward_fails_only_its_run_and_a_flat_reward_gets_a_warning(
    rf: RunRf, tmp_path: Path
) -> None:
    config = grpo_config(tmp_path / "experiments", "broken")
    here = "tests.e2e.test_dpo_grpo"
    config["rewards"] = {
        "grid": [[f"{REWARDS}:answer_format"], [f"{here}:broken_reward"], [f"{here}:zero_reward"]]
    }
    experiment = train(rf, tmp_path, config, expect=1)
    with ExperimentStore(experiment / "state.db") as store:
        states = {run.id: (run.state, run.error or "") for run in store.runs()}
        warnings = {event.run_id: event.detail for event in store.events(limit=100, kind="warning")}
    assert states[1][0] == "completed"
    assert states[2][0] == "failed" and "broken on purpose" in states[2][1]
    assert states[3][0] == "completed"
    assert list(warnings) == [3], "only the run whose rewards never varied is warned about"
    assert (warnings[3] or "").startswith(
        "no learning signal in chunk 1: every generation of a prompt got the same reward (reward 0 at every"
    )
    status = rf("status", "broken", "--dir", tmp_path / "experiments", expect=0).stdout
    assert "warnings" in status and "run 3: no learning signal in chunk 1" in status
