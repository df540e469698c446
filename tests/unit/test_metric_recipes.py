"""The generation metrics that ship in `recipes/`, on answers whose scores can be worked out by hand."""

from __future__ import annotations

import pytest

from recipes import math_metrics, qa_metrics


def test_token_f1_is_word_overlap_ignoring_case_and_punctuation() -> None:
    # 3 of 3 answer words are in the 6-word reference: precision 1, recall 0.5, F1 2/3; then 0.
    assert qa_metrics.token_f1(["the cat sat"], ["The cat sat on the mat."]) == pytest.approx(2 / 3)
    assert qa_metrics.token_f1(["the cat sat", "dogs"], ["the cat sat", "cats"]) == pytest.approx(0.5)


def test_rouge_l_rewards_words_in_order() -> None:
    # Longest common subsequence of "cat the" and "the cat" is one word of two.
    assert qa_metrics.rouge_l(["cat the"], ["the cat"]) == pytest.approx(0.5)
    assert qa_metrics.rouge_l(["the cat"], ["the cat"]) == pytest.approx(1.0)


def test_exact_match_ignores_case_punctuation_and_spacing() -> None:
    assert qa_metrics.exact_match(["The  cat!", "a dog"], ["the cat", "a cat"]) == 0.5


def test_qa_metrics_need_reference_answers() -> None:
    with pytest.raises(ValueError, match="no reference answers"):
        qa_metrics.token_f1(["an answer"], None)


def test_math_exact_match_counts_well_formed_correct_sums() -> None:
    answers = ["The answer is 7.", "The answer is 7", "The answer is 8.", "7"]
    assert math_metrics.exact_match(answers, [7, 7, 7, 7]) == 0.25
