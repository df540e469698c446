"""Generation metrics for question/answer data (`eval.metrics` in a config): each compares the
generated answers with the data's reference answers and returns the mean over the sample.

Word overlap is scored by Google's `rouge-score`: ROUGE-1 F is the token-level F1 of SQuAD-style
evaluation (lower-cased words, punctuation dropped), ROUGE-L the longest common word sequence.
"""

from __future__ import annotations

import functools
import re
from statistics import mean
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rouge_score.rouge_scorer import RougeScorer


def exact_match(completions: list[str], references: list[str] | None, **kwargs: Any) -> float:
    """Share of answers equal to the reference, ignoring case, punctuation and spacing."""
    return mean(
        float(normalize(answer) == normalize(reference))
        for answer, reference in zip(completions, require(references), strict=True)
    )


def token_f1(completions: list[str], references: list[str] | None, **kwargs: Any) -> float:
    """Mean word-level F1 between each answer and its reference (ROUGE-1 F)."""
    return rouge_mean("rouge1", completions, require(references))


def rouge_l(completions: list[str], references: list[str] | None, **kwargs: Any) -> float:
    """Mean ROUGE-L F between each answer and its reference."""
    return rouge_mean("rougeL", completions, require(references))


def rouge_mean(kind: str, completions: list[str], references: list[str]) -> float:
    score = scorer(kind).score
    return mean(
        score(reference, answer)[kind].fmeasure
        for answer, reference in zip(completions, references, strict=True)
    )


@functools.cache
def scorer(kind: str) -> RougeScorer:
    from rouge_score.rouge_scorer import RougeScorer

    return RougeScorer([kind])


def normalize(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def require(references: list[str] | None) -> list[str]:
    if references is None:
        raise ValueError("the data has no reference answers (a 'completion', 'chosen' or assistant message)")
    return references
