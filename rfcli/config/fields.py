"""Types and ranges of the settings rf relies on, checked when a plan is compiled.

TRL's and PEFT's config classes take many values without looking at them (a string learning rate,
a batch size of 0, LoRA r 0); those fail later, inside a worker, after other runs began training.
Each rule here names what would be right, for the error line.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from rfcli.config.errors import ConfigError


@dataclass(frozen=True)
class FieldRule:
    expected: str
    """What a right value is, in words: 'an integer >= 1'."""
    accepts: Callable[[Any], bool]


def _is_integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def integer(minimum: int, *, also: tuple[int, ...] = (), optional: bool = False) -> FieldRule:
    """An integer >= minimum, or one of the special values `also` (max_steps -1: 'no limit');
    None too when `optional` (max_length None: no truncation)."""
    extra = "".join(f" or {value}" for value in also) + (" or null" if optional else "")

    def accepts(value: Any) -> bool:
        if value is None:
            return optional
        return _is_integer(value) and (value >= minimum or value in also)

    return FieldRule(f"an integer >= {minimum}{extra}", accepts)


def number(low: float, *, above: bool = False, below: float | None = None) -> FieldRule:
    """A finite number >= low (> low when `above`), and < below when given."""
    words = f"a number {'>' if above else '>='} {low:g}" + (f" and < {below:g}" if below is not None else "")

    def accepts(value: Any) -> bool:
        if not _is_number(value) or value < low or (above and value == low):
            return False
        return below is None or value < below

    return FieldRule(words, accepts)


TRAINING_FIELDS: dict[str, FieldRule] = {
    "learning_rate": number(0, above=True),
    "per_device_train_batch_size": integer(1),
    "per_device_eval_batch_size": integer(1),
    "gradient_accumulation_steps": integer(1),
    "num_train_epochs": number(0, above=True),
    "max_steps": integer(1, also=(-1,)),
    "warmup_steps": number(0),
    "weight_decay": number(0),
    "max_grad_norm": number(0),
}
"""Fields of every TRL trainer config; a field left out keeps TRL's default."""

LORA_FIELDS: dict[str, FieldRule] = {
    "r": integer(1),
    "lora_alpha": number(0, above=True),
    "lora_dropout": number(0, below=1),
}


def field_errors(
    values: Mapping[str, Any], rules: Mapping[str, FieldRule], section: str
) -> Iterator[ConfigError]:
    """One error per set value that its rule does not accept."""
    for name, rule in rules.items():
        if name in values and not rule.accepts(values[name]):
            yield ConfigError(f"expected {rule.expected}, got {values[name]!r}", key=f"{section}.{name}")
