"""Data sources, formatting, eval splits and column checks, on small files written per test."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from datasets import Dataset

from rfcli.config.errors import ConfigError
from rfcli.config.schema import DataConfig, DataSource, ExperimentConfig
from rfcli.data.sources import apply_formatting, check_columns, load_run_data, load_source

BUILDERS = """
from datasets import Dataset

def rows(n=3):
    return [{"question": f"q{i}", "answer": f"a{i}", "id": i} for i in range(n)]

def as_dataset():
    return Dataset.from_list(rows())

def as_string():
    return "not rows"

def to_prompt_completion(row):
    return {"prompt": row["question"], "completion": row["answer"], "id": row["id"]}

def fails_on_two(row):
    if row["x"] == 2:
        raise ValueError("bad x")
    return {"text": str(row["x"])}
"""


@pytest.fixture
def builders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A module of data builders and a formatting function, importable for this test; its name."""
    name = f"rf_builders_{tmp_path.name}"
    (tmp_path / f"{name}.py").write_text(BUILDERS)
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> str:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


def qa_rows(n: int) -> list[dict[str, Any]]:
    return [{"question": f"q{i}", "answer": f"a{i}", "id": i} for i in range(n)]


def experiment(data: DataConfig, trainer: str = "sft") -> ExperimentConfig:
    return ExperimentConfig(name="test", trainer=trainer, data=data)


def test_jsonl_file(tmp_path: Path) -> None:
    dataset = load_source(DataSource(source=write_jsonl(tmp_path / "qa.jsonl", qa_rows(4))), "data.train")
    assert dataset.column_names == ["question", "answer", "id"]
    assert dataset["id"] == [0, 1, 2, 3]


def test_csv_file(tmp_path: Path) -> None:
    (tmp_path / "qa.csv").write_text("text,label\nhello,1\nworld,0\n")
    dataset = load_source(DataSource(source=str(tmp_path / "qa.csv")), "data.train")
    assert dataset.to_list() == [{"text": "hello", "label": 1}, {"text": "world", "label": 0}]


def test_a_missing_file_names_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such data file") as caught:
        load_source(DataSource(source=str(tmp_path / "missing.jsonl")), "data.eval")
    assert caught.value.key == "data.eval.source"


def test_a_malformed_file_shows_the_parser_error(tmp_path: Path) -> None:
    (tmp_path / "bad.jsonl").write_text('{"text": "ok"}\n{"text": \n')
    with pytest.raises(ConfigError, match="cannot read .*bad.jsonl.*JSON parse error"):
        load_source(DataSource(source=str(tmp_path / "bad.jsonl")), "data.train")


def test_a_builder_returning_a_list_gets_its_kwargs(builders: str) -> None:
    dataset = load_source(DataSource(source=f"{builders}:rows", kwargs={"n": 5}), "data.train")
    assert len(dataset) == 5 and dataset.column_names == ["question", "answer", "id"]


def test_a_builder_returning_a_dataset(builders: str) -> None:
    assert len(load_source(DataSource(source=f"{builders}:as_dataset"), "data.train")) == 3


def test_a_builder_returning_something_else_is_refused(builders: str) -> None:
    with pytest.raises(ConfigError, match="gave a str; expected a datasets.Dataset") as caught:
        load_source(DataSource(source=f"{builders}:as_string"), "data.train")
    assert caught.value.key == "data.train.source"


def test_shuffle_then_select(builders: str) -> None:
    source = DataSource(source=f"{builders}:rows", kwargs={"n": 20}, shuffle_seed=0, select=5)
    first, again = load_source(source, "data.train"), load_source(source, "data.train")
    assert len(first) == 5
    assert first["id"] == again["id"] != [0, 1, 2, 3, 4]
    assert load_source(DataSource(source=f"{builders}:rows", select=2), "data.train")["id"] == [0, 1]
    assert len(load_source(DataSource(source=f"{builders}:rows", select=50), "data.train")) == 3


def test_an_unreachable_hub_data_set_names_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets.config
    import huggingface_hub.constants

    # Both libraries read HF_HUB_OFFLINE at import; offline, the lookup fails at once instead of retrying.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    with pytest.raises(ConfigError, match="cannot load data set 'someone/some-data'.*local .jsonl") as caught:
        load_source(DataSource(source="someone/some-data"), "data.train")
    assert caught.value.key == "data.train.source"


def test_formatting_keeps_only_the_columns_it_returns(tmp_path: Path, builders: str) -> None:
    data = DataConfig(
        train=DataSource(source=write_jsonl(tmp_path / "qa.jsonl", qa_rows(3))),
        eval=DataSource(source=f"{builders}:rows", kwargs={"n": 2}),
        formatting=f"{builders}:to_prompt_completion",
    )
    train, evaluation = load_run_data(experiment(data))
    assert evaluation is not None
    for dataset in (train, evaluation):
        assert sorted(dataset.column_names) == ["completion", "id", "prompt"]
    assert train[0] == {"prompt": "q0", "completion": "a0", "id": 0}
    assert len(evaluation) == 2


def test_eval_fraction_holds_out_rows(builders: str) -> None:
    data = DataConfig(
        train=DataSource(source=f"{builders}:rows", kwargs={"n": 20}),
        eval_fraction=0.25,
        formatting=f"{builders}:to_prompt_completion",
    )
    train, evaluation = load_run_data(experiment(data))
    assert evaluation is not None
    assert (len(train), len(evaluation)) == (15, 5)
    assert sorted(list(train["id"]) + list(evaluation["id"])) == list(range(20))
    _, again = load_run_data(experiment(data))
    assert again is not None and again["id"] == evaluation["id"]  # the config's seed fixes the split


def test_an_eval_source_wins_over_eval_fraction(builders: str) -> None:
    data = DataConfig(
        train=DataSource(source=f"{builders}:rows", kwargs={"n": 20}),
        eval=DataSource(source=f"{builders}:rows", kwargs={"n": 4}),
        eval_fraction=0.25,
        formatting=f"{builders}:to_prompt_completion",
    )
    train, evaluation = load_run_data(experiment(data))
    assert evaluation is not None and (len(train), len(evaluation)) == (20, 4)


def test_eval_rows_scores_every_run_on_the_same_sample(builders: str) -> None:
    def data(eval_rows: int | None) -> DataConfig:
        return DataConfig(
            train=DataSource(source=f"{builders}:rows", kwargs={"n": 40}),
            eval_fraction=0.5,
            eval_rows=eval_rows,
            formatting=f"{builders}:to_prompt_completion",
        )

    _, everything = load_run_data(experiment(data(None)))
    train, sample = load_run_data(experiment(data(5)))
    assert everything is not None and sample is not None
    assert len(train) == 20 and len(sample) == 5
    assert set(sample["id"]) < set(everything["id"])
    _, same = load_run_data(experiment(data(5)))
    assert same is not None and same["id"] == sample["id"]
    _, capped = load_run_data(experiment(data(100)))
    assert capped is not None and capped["id"] == everything["id"]


def test_too_few_rows_to_hold_out(builders: str) -> None:
    data = DataConfig(
        train=DataSource(source=f"{builders}:rows", kwargs={"n": 1}),
        eval_fraction=0.5,
        formatting=f"{builders}:to_prompt_completion",
    )
    with pytest.raises(ConfigError, match="cannot hold out 0.5 of 1 rows") as caught:
        load_run_data(experiment(data))
    assert caught.value.key == "data.eval_fraction"


def test_load_run_data_checks_the_trainer_columns(builders: str) -> None:
    data = DataConfig(
        train=DataSource(source=f"{builders}:rows"), formatting=f"{builders}:to_prompt_completion"
    )
    with pytest.raises(ConfigError, match="missing columns 'chosen', 'rejected'") as caught:
        load_run_data(experiment(data, trainer="dpo"))
    assert caught.value.key == "data.train"


@pytest.mark.parametrize(
    ("trainer", "columns", "missing"),
    [
        (
            "sft",
            ["question", "answer"],
            "missing column 'text': the sft trainer reads 'text', or 'messages', or "
            "'prompt' + 'completion'; the data has 'question', 'answer'",
        ),
        ("sft", ["prompt", "id"], "missing column 'completion'"),
        (
            "dpo",
            ["prompt", "chosen"],
            "missing column 'rejected': the dpo trainer reads 'prompt' + 'chosen' + 'rejected'",
        ),
        ("grpo", ["question"], "missing column 'prompt'"),
    ],
)
def test_check_columns_names_what_is_missing(trainer: str, columns: list[str], missing: str) -> None:
    dataset = Dataset.from_list([dict.fromkeys(columns, "x")])
    with pytest.raises(ConfigError) as caught:
        check_columns(dataset, trainer, "data.eval")
    assert caught.value.key == "data.eval"
    assert caught.value.message.startswith(missing)


@pytest.mark.parametrize(
    ("trainer", "columns"),
    [
        ("sft", ["text"]),
        ("sft", ["messages", "id"]),
        ("sft", ["prompt", "completion"]),
        ("dpo", ["prompt", "chosen", "rejected"]),
        ("grpo", ["prompt", "answer"]),
    ],
)
def test_check_columns_accepts(trainer: str, columns: list[str]) -> None:
    check_columns(Dataset.from_list([dict.fromkeys(columns, "x")]), trainer, "data.train")


def test_chatterbot_qa_as_a_config_source() -> None:
    dataset = load_source(DataSource(source="recipes.qa_data:chatterbot_qa"), "data.train")
    assert len(dataset) > 1000
    assert dataset.column_names == ["prompt", "completion"]
    check_columns(dataset, "sft", "data.train")
    first = dataset[0]
    assert first["prompt"] == [{"role": "user", "content": "What is AI?"}]
    assert first["completion"][0]["role"] == "assistant" and first["completion"][0]["content"]
    assert all(row["prompt"][0]["content"] and row["completion"][0]["content"] for row in dataset)


def test_chatterbot_qa_categories() -> None:
    from recipes.qa_data import chatterbot_qa

    ai = chatterbot_qa(categories=["ai"])
    assert 0 < len(ai) < 200
    assert ai["prompt"] == chatterbot_qa()["prompt"][: len(ai)]  # ai.yml comes first: a fixed order
    with pytest.raises(ValueError, match="unknown chatterbot-corpus categories \\['nope'\\]"):
        chatterbot_qa(categories=["nope"])


def test_a_formatting_function_that_raises_names_the_key_row_and_line(builders: str) -> None:
    spec = f"{builders}:fails_on_two"
    with pytest.raises(ConfigError) as raised:
        apply_formatting(Dataset.from_list([{"x": 1}, {"x": 2}]), spec)
    assert raised.value.key == "data.formatting"
    assert f"'{spec}' raised ValueError: bad x (on row 1 at " in raised.value.message
    assert raised.value.message.endswith(f"{builders}.py:18)")  # the user's `raise`, not rf's frame


def test_a_txt_file_is_one_text_row_per_line(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("first line\nsecond line\n")
    dataset = load_source(DataSource(source=str(tmp_path / "notes.txt")), "data.train")
    assert dataset["text"] == ["first line", "second line"]
    check_columns(dataset, "sft", "data.train")
