"""The pure parts of DPO and GRPO: the recipes' data and rewards, the arithmetic format, and the
trainer kinds' rule for `model.reference` (reference log-probs: test_dpo_reference.py)."""

from __future__ import annotations

from rfcli.config.kinds import kind_errors
from rfcli.config.typed import to_typed_config
from rfcli.models.arithmetic import addition_problems, answer, parse_answer, question


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
