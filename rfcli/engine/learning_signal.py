"""Is there anything to learn from? A run whose training signal is flat looks like a success: it
completes, its loss is steady, and ranked by its reward it may even come out "best".

The rules, applied to the metrics a run logged in one chunk (one row per step):

1. GRPO learns from the differences between the rewards of one prompt's generations. When every
   group got equal rewards at every step of the chunk (`frac_reward_zero_std` 1 throughout; where
   TRL does not log it, `reward_std` 0 throughout), every advantage was 0: nothing was learned.
2. SFT's loss changes from batch to batch whenever there are tokens to learn. The same loss at
   every step of a chunk of two steps or more (0, say, when truncation or a completion-only loss
   leaves no token to score) means the data gives no signal.
3. Other trainers, and chunks that did not log the metric, say nothing.

Pure logic: no torch, no I/O; the controller records what it returns as a warning event.
"""

from __future__ import annotations

from collections.abc import Sequence

MetricRow = tuple[int, str, float]
WARNING = "warning"
"""The kind of event a run's warning is recorded as (what `rf status` and the report list)."""


def missing_signal(trainer: str, chunk_index: int, metrics: Sequence[MetricRow]) -> str | None:
    """What is wrong, with what to check, when the chunk's metrics show no learning signal."""
    if trainer == "grpo":
        return _flat_rewards(chunk_index, metrics)
    if trainer == "sft":
        return _flat_loss(chunk_index, metrics)
    return None


def _series(metrics: Sequence[MetricRow], key: str) -> list[float]:
    """The metric's value at each step that logged it, by step."""
    return [value for _, name, value in sorted(metrics) if name == key]


def _flat_rewards(chunk_index: int, metrics: Sequence[MetricRow]) -> str | None:
    zero_std = _series(metrics, "frac_reward_zero_std")
    if zero_std:
        flat = all(value == 1.0 for value in zero_std)
    else:
        spread = _series(metrics, "reward_std")
        flat = bool(spread) and all(value == 0.0 for value in spread)
    if not flat:
        return None
    rewards = sorted(set(_series(metrics, "reward")))
    seen = f" (reward {rewards[0]:g} at every step)" if len(rewards) == 1 else ""
    return (
        f"no learning signal in chunk {chunk_index}: every generation of a prompt got the same reward"
        f"{seen}, so every advantage was 0 and GRPO learned nothing; check that the reward functions "
        "can score what the model writes (a model that never ends its answers earns nothing), or raise "
        "training.num_generations or training.temperature"
    )


def _flat_loss(chunk_index: int, metrics: Sequence[MetricRow]) -> str | None:
    losses = _series(metrics, "loss")
    if len(losses) < 2 or len(set(losses)) > 1:
        return None
    return (
        f"no learning signal in chunk {chunk_index}: the loss was {losses[0]:g} at every step; check that "
        "training.max_length leaves the completions in (a completion-only loss scores no token of a row "
        "truncated before its answer) and that data.formatting gives each row text to learn"
    )
