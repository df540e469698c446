"""GRPO reward functions for `recipes.math_data` problems (`rewards:` in a config).

TRL calls each with keywords (prompts, completions, completion_ids, trainer_state and every data
column); conversational completions are lists of messages, plain ones strings.
"""

from __future__ import annotations

from typing import Any

from rfcli.models.arithmetic import parse_answer


def completion_text(completion: Any) -> str:
    return completion[-1]["content"] if isinstance(completion, list) else str(completion)


def correct_answer(completions: list[Any], answer: list[int], **kwargs: Any) -> list[float]:
    """1 for the exact sum in the expected format, else 0."""
    return [
        1.0 if parse_answer(completion_text(c)) == expected else 0.0
        for c, expected in zip(completions, answer, strict=True)
    ]


def answer_format(completions: list[Any], **kwargs: Any) -> list[float]:
    """1 for a completion that is exactly "The answer is N.", else 0: the model must stop after it."""
    return [1.0 if parse_answer(completion_text(c)) is not None else 0.0 for c in completions]
