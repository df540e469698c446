"""A chunk with nothing to learn from gets a warning: GRPO groups that all got equal rewards, an SFT
loss that never moved. One test per rule of `rfcli/engine/learning_signal.py`."""

from __future__ import annotations

from rfcli.engine.learning_signal import missing_signal

MetricRow = tuple[int, str, float]


def rows(key: str, *values: float) -> list[MetricRow]:
    return [(step, key, value) for step, value in enumerate(values, start=1)]


def test_rule_1_grpo_groups_with_equal_rewards_at_every_step_learn_nothing() -> None:
    flat = rows("frac_reward_zero_std", 1.0, 1.0, 1.0) + rows("reward", 0.0, 0.0, 0.0)
    warning = missing_signal("grpo", 2, flat)
    assert warning is not None
    assert warning.startswith("no learning signal in chunk 2: every generation of a prompt got the same")
    assert "(reward 0 at every step)" in warning and "advantage was 0" in warning


def test_rule_1_one_step_with_varying_rewards_is_a_signal() -> None:
    assert missing_signal("grpo", 1, rows("frac_reward_zero_std", 1.0, 0.5, 1.0)) is None


def test_rule_1_groups_that_differ_only_from_each_other_still_give_no_signal() -> None:
    """Each prompt's generations scored alike, but prompts scored differently: the mean moves, the
    advantages are still 0."""
    metrics = rows("frac_reward_zero_std", 1.0, 1.0) + rows("reward", 0.25, 0.5)
    warning = missing_signal("grpo", 1, metrics)
    assert warning is not None and "at every step)" not in warning


def test_rule_1_without_frac_reward_zero_std_the_reward_spread_decides() -> None:
    assert missing_signal("grpo", 1, rows("reward_std", 0.0, 0.0)) is not None
    assert missing_signal("grpo", 1, rows("reward_std", 0.0, 0.1)) is None


def test_rule_2_an_sft_loss_that_never_moves_is_no_signal() -> None:
    warning = missing_signal("sft", 3, rows("loss", 0.0, 0.0, 0.0) + rows("eval_loss", 1.5))
    assert warning is not None
    assert warning.startswith("no learning signal in chunk 3: the loss was 0 at every step")
    assert missing_signal("sft", 3, rows("loss", 2.5, 2.4, 2.5)) is None


def test_rule_2_one_step_says_nothing() -> None:
    assert missing_signal("sft", 1, rows("loss", 0.0)) is None


def test_rule_3_other_trainers_and_unlogged_metrics_say_nothing() -> None:
    assert missing_signal("dpo", 1, rows("loss", 0.69, 0.69)) is None
    assert missing_signal("grpo", 1, rows("loss", 0.0, 0.0)) is None
    assert missing_signal("sft", 1, []) is None
