"""Preference pairs for offline DPO (`data.train.source: recipes.preference_data:chatterbot_preferences`).

Each chatterbot-corpus answer is `chosen` for its own question; `rejected` is the answer of another
question, picked by a seeded shuffle: an answer that is fluent but off-topic, so the preference is
learnable without any labelling.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import TYPE_CHECKING

from recipes.qa_data import chatterbot_qa

if TYPE_CHECKING:
    from datasets import Dataset


def chatterbot_preferences(categories: Sequence[str] | None = None, seed: int = 0) -> Dataset:
    """Conversational prompt/chosen/rejected rows, in chatterbot_qa's order."""
    from datasets import Dataset

    rows = chatterbot_qa(categories).to_list()
    others = list(range(len(rows)))
    random.Random(seed).shuffle(others)
    pairs = []
    for index, row in enumerate(rows):
        rejected = rows[others[index]]["completion"]
        if rejected == row["completion"]:  # the shuffle kept the row in place, or two rows share an answer
            rejected = rows[(others[index] + 1) % len(rows)]["completion"]
        pairs.append({"prompt": row["prompt"], "chosen": row["completion"], "rejected": rejected})
    return Dataset.from_list(pairs)
