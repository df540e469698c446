"""Data builders for offline runs (`data.train.source: recipes.qa_data:chatterbot_qa` in a config).

chatterbot-corpus (BSD) ships about 2,300 English question/answer pairs inside its PyPI package,
so an SFT run on real text needs no network.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from datasets import Dataset


def chatterbot_qa(categories: Sequence[str] | None = None) -> Dataset:
    """Conversational prompt/completion rows, in file order: every English category, or the named ones
    (file names without .yml: ai, computers, science, ...).

    An entry is a question followed by one or more answers; each answer makes its own row.
    """
    import yaml
    from chatterbot_corpus.corpus import DATA_DIRECTORY
    from datasets import Dataset

    files = {path.stem: path for path in sorted(Path(DATA_DIRECTORY, "english").glob("*.yml"))}
    unknown = sorted(set(categories or ()) - set(files))
    if unknown:
        raise ValueError(f"unknown chatterbot-corpus categories {unknown}; expected some of {sorted(files)}")
    rows: list[dict[str, list[dict[str, str]]]] = []
    for name in categories or files:
        for entry in yaml.safe_load(files[name].read_text(encoding="utf-8"))["conversations"]:
            if not isinstance(entry, list):  # one malformed entry in trivia.yml parses as a single string
                continue
            question, *answers = (str(text).strip() for text in entry)
            rows.extend(
                {
                    "prompt": [{"role": "user", "content": question}],
                    "completion": [{"role": "assistant", "content": answer}],
                }
                for answer in answers
                if question and answer
            )
    return Dataset.from_list(rows)
