"""Settings TRL renamed or removed answer with their migration and the TRL version, and the table of
them stays true of the installed TRL."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from rfcli.config.errors import ConfigError
from rfcli.config.migrations import MOVED_FIELDS, MovedField
from rfcli.config.plan import compile_plan
from rfcli.config.training import config_class
from tests.unit.test_plan import write_config

GRPO = ["trainer=grpo", "rewards=[recipes.math_rewards:answer_format]", "training.num_generations=4"]


def fields_of(kind: str) -> set[str]:
    return {field.name for field in dataclasses.fields(config_class(kind)) if field.init}


@pytest.mark.parametrize("moved", MOVED_FIELDS, ids=lambda moved: f"{'/'.join(moved.kinds)}.{moved.name}")
def test_each_moved_field_is_gone_from_the_installed_trl_and_its_replacement_is_there(
    moved: MovedField,
) -> None:
    """A TRL upgrade that brings a field back, or drops a replacement, fails here, not in a user's run."""
    for kind in moved.kinds:
        assert moved.name not in fields_of(kind), f"{kind}: TRL has '{moved.name}' again"
        if moved.replacement is not None:
            assert moved.replacement in fields_of(kind), f"{kind}: TRL has no '{moved.replacement}'"


def plan_error(tmp_path: Path, overrides: list[str]) -> list[str]:
    with pytest.raises(ConfigError) as raised:
        compile_plan(write_config(tmp_path), overrides)
    return raised.value.lines()


def test_grpo_max_prompt_length_says_to_drop_it_not_a_near_name(tmp_path: Path) -> None:
    [line] = plan_error(tmp_path, [*GRPO, "training.max_prompt_length=256"])
    assert line.endswith(
        "training.max_prompt_length: GRPOConfig has no field 'max_prompt_length': TRL 0.28 removed it; "
        "prompts are no longer truncated, so drop it and leave overlong prompts out of the data "
        "(max_completion_length bounds only what the model generates)"
    )
    assert "did you mean" not in line


def test_dpo_prompt_and_completion_lengths_say_max_length_bounds_their_sum(tmp_path: Path) -> None:
    lines = plan_error(
        tmp_path, ["trainer=dpo", "training.max_prompt_length=64", "training.max_completion_length=64"]
    )
    assert len(lines) == 2  # both reported at once
    for line, name in zip(lines, ("max_prompt_length", "max_completion_length"), strict=True):
        assert f"DPOConfig has no field '{name}': TRL 0.29 removed it; max_length now bounds" in line
        assert "prompt and the completion together" in line


def test_a_field_moved_for_another_trainer_still_gets_the_closest_name(tmp_path: Path) -> None:
    """SFT never had max_prompt_length: the usual did-you-mean answers it."""
    [line] = plan_error(tmp_path, ["training.max_prompt_length=64"])
    assert "SFTConfig has no field 'max_prompt_length'" in line and "removed" not in line
