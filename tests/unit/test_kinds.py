"""The trainer kinds: each names TRL classes that exist, and each checked field is one TRL has."""

from __future__ import annotations

import dataclasses

import pytest

from rfcli.config.fields import LORA_FIELDS, TRAINING_FIELDS
from rfcli.config.kinds import KINDS, load_class


@pytest.mark.parametrize("name", list(KINDS))
def test_a_kind_names_trl_classes_and_their_fields(name: str) -> None:
    kind = KINDS[name]
    config_class = load_class(kind.config_class)
    trainer_class = load_class(kind.trainer_class)
    assert config_class.__name__ == f"{name.upper()}Config"
    assert trainer_class.__name__ == f"{name.upper()}Trainer"
    fields = {field.name for field in dataclasses.fields(config_class)}
    assert set(TRAINING_FIELDS) | set(kind.fields) | set(kind.defaults) <= fields


def test_lora_rules_are_lora_config_fields() -> None:
    from peft import LoraConfig

    assert set(LORA_FIELDS) <= {field.name for field in dataclasses.fields(LoraConfig)}


@pytest.mark.parametrize(
    ("rule", "good", "bad"),
    [
        ("max_steps", [1, 500, -1], [0, -2, 2.5, "10", True, None]),
        ("learning_rate", [1e-5, 3], [0, -1e-3, "fast", None, float("nan"), float("inf")]),
        ("warmup_steps", [0, 10, 0.1], [-1, "5"]),
    ],
)
def test_training_rules(rule: str, good: list[object], bad: list[object]) -> None:
    accepts = TRAINING_FIELDS[rule].accepts
    assert [value for value in good if not accepts(value)] == []
    assert [value for value in bad if accepts(value)] == []


def test_max_length_may_be_null_for_no_truncation() -> None:
    accepts = KINDS["sft"].fields["max_length"].accepts
    assert [accepts(value) for value in (1, 512, None, 0, 1.5)] == [True, True, True, False, False]


def test_lora_dropout_is_below_one() -> None:
    accepts = LORA_FIELDS["lora_dropout"].accepts
    assert [accepts(value) for value in (0, 0.05, 0.999, 1, 1.0, -0.1)] == [
        True,
        True,
        True,
        False,
        False,
        False,
    ]
