"""Generation metrics for `recipes.math_data` problems (`eval.metrics` in a config)."""

from __future__ import annotations

from statistics import mean
from typing import Any

from recipes.math_rewards import correct_answer


def exact_match(completions: list[str], answer: list[int], **kwargs: Any) -> float:
    """Share of answers that are exactly "The answer is <the sum>."."""
    return mean(correct_answer(completions, answer))
