"""Evaluation in length groups: the groups (pure), and TRL's SFT evaluation giving the same loss and
metrics with them as without, on a real tiny model."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from rfcli.trainers.length_groups import MAX_ROWS, length_groups


def test_the_worked_example() -> None:
    assert length_groups([9, 2, 10, 3, 3], overhead=8) == [[1, 3, 4], [0, 2]]


@pytest.mark.parametrize(
    ("lengths", "overhead", "expected"),
    [
        ([], 8, []),
        ([7], 8, [[0]]),
        ([5, 5, 5, 5], 0, [[0, 1, 2, 3]]),  # equal lengths: cutting saves nothing
        ([1, 64, 2, 63], 1000, [[0, 2, 3, 1]]),  # a forward costs more than the padding it saves
        ([1, 64, 2, 63], 0, [[0], [2], [3], [1]]),  # free forwards: every length on its own
        ([3, 1, 2] * 4, 3, [[1, 4, 7, 10], [2, 5, 8, 11], [0, 3, 6, 9]]),
    ],
)
def test_groups(lengths: list[int], overhead: int, expected: list[list[int]]) -> None:
    assert length_groups(lengths, overhead) == expected


def test_every_row_is_in_exactly_one_group_shortest_first() -> None:
    lengths = [(row * 37) % 61 + 1 for row in range(200)]
    groups = length_groups(lengths, overhead=64)
    assert sorted(row for group in groups for row in group) == list(range(200))
    longest = [max(lengths[row] for row in group) for group in groups]
    shortest = [min(lengths[row] for row in group) for group in groups]
    assert longest == sorted(longest) and all(a < b for a, b in zip(longest, shortest[1:], strict=False))
    assert 1 < len(groups) < 200


def test_a_batch_too_large_to_plan_is_one_group() -> None:
    assert length_groups([1, 100] * MAX_ROWS, overhead=0) == [list(range(2 * MAX_ROWS))]


def test_only_right_padded_batches_with_labels_are_grouped() -> None:
    from rfcli.trainers.grouped_eval import groupable

    right = torch.tensor([[1, 1, 1], [1, 0, 0]])
    left = torch.tensor([[1, 1, 1], [0, 0, 1]])
    ids = torch.zeros(2, 3, dtype=torch.long)
    assert groupable({"input_ids": ids, "attention_mask": right, "labels": ids}, right)
    assert not groupable({"input_ids": ids, "attention_mask": left, "labels": ids}, left)
    assert not groupable({"input_ids": ids, "attention_mask": right}, right)
    extra = {"input_ids": ids, "attention_mask": right, "labels": ids, "pixel_values": torch.zeros(2)}
    assert not groupable(extra, right)


def sft_evaluation(grouped: bool, forwards: list[int]) -> dict[str, float]:
    """Train rf-tiny 12 steps (enough to get some next tokens right), then evaluate in batches of 12."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed
    from trl import SFTConfig, SFTTrainer

    from rfcli.models.tiny import builtin_model_path
    from rfcli.trainers.grouped_eval import GroupedEval

    path = builtin_model_path("rf-tiny")
    words = "the cat sat on a mat and then it ran far away from home".split()
    rows = [  # in each eval batch of 12, two long rows (over 40 tokens) and ten short ones (under 12)
        {
            "prompt": " ".join(words[: 1 + i % 5]),
            "completion": " " + " ".join(words * 3 if i % 6 == 0 else words[:3]),
        }
        for i in range(24)
    ]
    set_seed(0)
    model = AutoModelForCausalLM.from_pretrained(path)
    model.register_forward_pre_hook(lambda module, args: forwards.append(1))
    arguments = SFTConfig(
        output_dir="unused",
        max_steps=12,
        learning_rate=1e-2,
        per_device_train_batch_size=4,
        per_device_eval_batch_size=12,
        max_length=64,
        use_cpu=True,
        bf16=False,
        report_to="none",
        save_strategy="no",
        disable_tqdm=True,
    )
    trainer_class: Any = type("Grouped", (GroupedEval, SFTTrainer), {}) if grouped else SFTTrainer
    trainer = trainer_class(
        model=model,
        args=arguments,
        train_dataset=Dataset.from_list(rows),
        eval_dataset=Dataset.from_list(rows),
        processing_class=AutoTokenizer.from_pretrained(path),
    )
    trainer.train()
    forwards.clear()
    metrics: dict[str, float] = trainer.evaluate()
    return {key: value for key, value in metrics.items() if "runtime" not in key and "per_second" not in key}


def test_sft_evaluation_in_length_groups_equals_the_padded_batches() -> None:
    padded_forwards: list[int] = []
    grouped_forwards: list[int] = []
    padded = sft_evaluation(False, padded_forwards)
    grouped = sft_evaluation(True, grouped_forwards)
    assert {"eval_loss", "eval_entropy", "eval_mean_token_accuracy"} <= padded.keys() == grouped.keys()
    assert grouped == pytest.approx(padded, rel=1e-5)
    assert padded["eval_mean_token_accuracy"] > 0  # the comparison covers a metric that is not all zeros
    assert len(padded_forwards) == 2 and len(grouped_forwards) > 2  # 24 rows in batches of 12, then in groups
