"""Reward functions as a GRPO trainer calls them: a wrong answer or a raise names the reward and the
user's own line, not TRL's internals."""

from __future__ import annotations

from pathlib import Path

import pytest

from rfcli.config.errors import ConfigError
from rfcli.trainers.rewards import reward_function

REWARDS = """\
def length(completions, **kwargs):
    return [float(len(c)) for c in completions]

def one_number(completions, **kwargs):
    return 1.0

def too_few(completions, **kwargs):
    return [1.0]

def broken(completions, **kwargs):
    return [1.0 / 0 for c in completions]
"""


@pytest.fixture
def rewards(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    name = f"rf_rewards_{tmp_path.name}"
    (tmp_path / f"{name}.py").write_text(REWARDS)
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


def test_a_good_reward_keeps_its_name_and_answers(rewards: str) -> None:
    reward = reward_function(f"{rewards}:length", "rewards[0].function")
    assert reward.__name__ == "length"  # TRL logs each reward under its function's name
    assert reward(prompts=["a", "b"], completions=["xy", "xyz"]) == [2.0, 3.0]


@pytest.mark.parametrize(
    ("function", "message"),
    [
        ("one_number", "returned a float (1.0) for 2 completions; a reward returns a list"),
        ("too_few", "returned a list of 1 ([1.0]) for 2 completions"),
        ("broken", "raised ZeroDivisionError: float division by zero (at "),
    ],
)
def test_a_wrong_reward_says_what_and_where(rewards: str, function: str, message: str) -> None:
    reward = reward_function(f"{rewards}:{function}", "rewards[1].function")
    with pytest.raises(ConfigError) as raised:
        reward(prompts=["a", "b"], completions=["xy", "xyz"])
    assert raised.value.key == "rewards[1].function"
    assert message in raised.value.message
    if function == "broken":
        assert raised.value.message.endswith(f"{rewards}.py:11)")
