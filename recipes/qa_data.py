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


def chatterbot_documents(num_rows: int = 512, words: int = 600) -> Dataset:
    """`text` rows of about `words` words each: the corpus's questions and answers run together, each
    row starting a little further into it. For throughput measurements, where short rows would measure
    rf's overhead instead of the device: with `max_length` below a row's length every row is full."""
    from datasets import Dataset

    pairs = chatterbot_qa()
    stream = " ".join(
        f"{row['prompt'][0]['content']} {row['completion'][0]['content']}" for row in pairs
    ).split()
    around = stream * (1 + words // len(stream) + 1)  # a row may run past the end into the start
    rows = [" ".join(around[(index * 97) % len(stream) :][:words]) for index in range(num_rows)]
    return Dataset.from_dict({"text": rows})
