"""Math problems with checkable answers for offline GRPO (`recipes.math_data:addition_prompts`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rfcli.models.arithmetic import addition_problems, question

if TYPE_CHECKING:
    from datasets import Dataset


def addition_prompts(count: int = 2000, seed: int = 1) -> Dataset:
    """Conversational prompts "What is a plus b?" with the sum in an `answer` column, which TRL passes
    to every reward function as a keyword. Seed 1 by default: not the problems rf-tiny-math saw."""
    from datasets import Dataset

    return Dataset.from_list(
        [
            {"prompt": [{"role": "user", "content": question(a, b)}], "answer": a + b}
            for a, b in addition_problems(count, seed)
        ]
    )
