"""The pure parts of DPO and GRPO: reference-log-prob fingerprints and files, the recipes' data and
rewards, the arithmetic format, and the trainer kinds' rule for `model.reference`."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from datasets import Dataset

from rfcli.config.kinds import kind_errors
from rfcli.config.typed import to_typed_config
from rfcli.models.arithmetic import addition_problems, answer, parse_answer, question
from rfcli.trainers.dpo_reference import reference_fingerprint, save_logps, with_logps

SETTINGS = {"max_length": 64, "truncation_mode": "keep_start"}


def tokenized(rows: int = 4) -> Dataset:
    return Dataset.from_dict(
        {
            "prompt_ids": [[1, 2, i] for i in range(rows)],
            "chosen_ids": [[3, i] for i in range(rows)],
            "rejected_ids": [[4, i] for i in range(rows)],
        }
    )


def test_fingerprint_is_the_same_for_the_same_reference_data_and_settings() -> None:
    assert reference_fingerprint("m", tokenized(), SETTINGS) == reference_fingerprint(
        "m", tokenized(), SETTINGS
    )


@pytest.mark.parametrize(
    ("reference", "data", "settings"),
    [
        ("other-model", tokenized(), SETTINGS),
        ("m", tokenized(5), SETTINGS),
        ("m", tokenized().select([1, 0, 2, 3]), SETTINGS),
        ("m", tokenized(), {**SETTINGS, "max_length": 32}),
    ],
)
def test_fingerprint_changes_with_reference_rows_order_or_tokenization(
    reference: str, data: Dataset, settings: dict[str, object]
) -> None:
    assert reference_fingerprint(reference, data, settings) != reference_fingerprint(
        "m", tokenized(), SETTINGS
    )


def test_fingerprint_ignores_reference_columns_already_present() -> None:
    with_columns = tokenized().add_column("ref_chosen_logps", [0.0] * 4)
    assert reference_fingerprint("m", with_columns, SETTINGS) == reference_fingerprint(
        "m", tokenized(), SETTINGS
    )


def test_saved_log_probs_come_back_as_columns(tmp_path: Path) -> None:
    path = tmp_path / "cache" / "abc.pt"
    save_logps(path, torch.tensor([-1.5, -2.0, -3.0, -4.25]), torch.tensor([-5.0, -6.0, -7.0, -8.0]))
    assert [p.name for p in path.parent.iterdir()] == ["abc.pt"]  # no scratch file left behind
    loaded = with_logps(tokenized(), path)
    assert loaded["ref_chosen_logps"] == [-1.5, -2.0, -3.0, -4.25]
    assert loaded["ref_rejected_logps"] == [-5.0, -6.0, -7.0, -8.0]
    with pytest.raises(ValueError, match="4 reference log-probs for 5 rows"):
        with_logps(tokenized(5), path)


def test_arithmetic_answers_parse_only_in_their_exact_format() -> None:
    assert parse_answer(answer(12)) == 12
    assert parse_answer(" The answer is 7.\n") == 7
    assert parse_answer("The answer is 7. And more") is None
    assert parse_answer("7") is None
    assert question(3, 4) == "What is 3 plus 4?"
    assert addition_problems(5, seed=0) == addition_problems(5, seed=0)


def test_math_rewards_score_format_and_correctness() -> None:
    from recipes.math_rewards import answer_format, correct_answer

    completions = [
        [{"role": "assistant", "content": "The answer is 5."}],
        [{"role": "assistant", "content": "The answer is 6."}],
        [{"role": "assistant", "content": "five"}],
    ]
    assert correct_answer(completions, answer=[5, 5, 5]) == [1.0, 0.0, 0.0]
    assert answer_format(completions) == [1.0, 1.0, 0.0]
    assert answer_format(["The answer is 5."]) == [1.0]


def test_addition_prompts_carry_their_answer() -> None:
    from recipes.math_data import addition_prompts

    rows = addition_prompts(count=10, seed=3)
    assert rows.column_names == ["prompt", "answer"]
    for row in rows:
        a, b = (int(word) for word in row["prompt"][0]["content"].rstrip("?").split()[2::2])
        assert row["answer"] == a + b


def test_preference_pairs_reject_another_questions_answer() -> None:
    from recipes.preference_data import chatterbot_preferences

    pairs = chatterbot_preferences(categories=["ai", "computers"])
    assert pairs.column_names == ["prompt", "chosen", "rejected"]
    assert all(row["chosen"] != row["rejected"] for row in pairs)
    assert pairs.to_list() == chatterbot_preferences(categories=["ai", "computers"]).to_list()


def test_only_dpo_takes_a_reference_model() -> None:
    base = {"name": "x", "data": {"train": "d.jsonl"}, "model": {"reference": "rf-tiny"}}
    dpo = to_typed_config({**base, "trainer": "dpo"})
    assert dpo.model.reference == "rf-tiny"
    assert [str(error) for error in kind_errors(dpo)] == []
    sft = to_typed_config({**base, "trainer": "sft"})
    assert [str(error) for error in kind_errors(sft)] == [
        "model.reference: only the dpo trainer uses one, not sft"
    ]
