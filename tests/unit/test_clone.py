"""A clone's config: the parent's, with overrides, checked like a plan, keeping what it does not change."""

from __future__ import annotations

from pathlib import Path

import pytest

from rfcli.config.clone import clone_config
from rfcli.config.errors import ConfigError
from rfcli.config.plan import compile_plan

GRPO = Path("configs/quickstart-grpo.yaml")


def grpo_parent() -> dict:
    return compile_plan(GRPO, []).runs[1].raw


def test_a_grpo_clone_keeps_its_reward_functions_and_max_steps() -> None:
    parent = grpo_parent()
    clone = clone_config(parent, 40, ["training.learning_rate=1e-4"])
    assert clone["rewards"] == parent["rewards"]
    assert clone["training"]["learning_rate"] == 1e-4
    assert clone["training"]["max_steps"] == 40


def test_a_clone_may_set_its_own_max_steps() -> None:
    assert clone_config(grpo_parent(), 40, ["training.max_steps=60"])["training"]["max_steps"] == 60


def test_a_bad_override_is_refused_like_a_plan() -> None:
    with pytest.raises(ConfigError, match="did you mean 'learning_rate'") as raised:
        clone_config(grpo_parent(), 40, ["training.lerning_rate=1e-4"])
    assert raised.value.key == "training.lerning_rate"


def test_a_clone_is_one_run() -> None:
    with pytest.raises(ConfigError, match="a clone is one run"):
        clone_config(grpo_parent(), None, ["training.learning_rate={grid: [1e-3, 1e-4]}"])


def test_a_clone_is_checked_for_ranges_like_a_plan() -> None:
    with pytest.raises(ConfigError, match="expected an integer >= 1, got 0") as raised:
        clone_config(grpo_parent(), 40, ["lora.r=0"])
    assert raised.value.key == "lora.r"


def test_a_warm_clone_must_end_beyond_its_parents_step() -> None:
    with pytest.raises(
        ConfigError, match="goes on from its parent's step 30: max_steps must be above it"
    ) as raised:
        clone_config(grpo_parent(), 40, ["training.max_steps=20"], warm_from_step=30)
    assert raised.value.key == "training.max_steps"
    assert clone_config(grpo_parent(), 40, ["training.max_steps=50"], warm_from_step=30)
    assert clone_config(grpo_parent(), 40, ["training.max_steps=20"])  # a cold clone starts at step 0


def test_a_lora_clone_trains_in_its_parents_precision(run_config: dict) -> None:
    """It shares its parent's base model on the worker, forward wrapper included."""
    with pytest.raises(ConfigError, match="must train in one precision"):
        clone_config(run_config, 40, ["training.bf16=true"])
    assert clone_config(run_config, 40, ["training.bf16=false"])  # what the CPU trains in anyway
