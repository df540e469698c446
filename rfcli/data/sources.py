"""A run's data sets: each source loaded, shuffled and cut, formatted, split, and checked against the
columns its trainer reads, so a wrong column fails before training rather than deep inside TRL."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rfcli.config.callables import resolve_callable
from rfcli.config.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Callable

    from datasets import Dataset

    from rfcli.config.schema import DataSource, ExperimentConfig

FILE_FORMATS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}
"""Local file suffix -> the `datasets` builder that reads it."""

TRAINER_COLUMNS: dict[str, tuple[tuple[str, ...], ...]] = {
    "sft": (("text",), ("messages",), ("prompt", "completion")),
    "dpo": (("prompt", "chosen", "rejected"),),
    "grpo": (("prompt",),),
}
"""The column sets each trainer accepts; a data set needs every column of at least one set."""


def data_key(config: ExperimentConfig) -> str:
    """Runs with the same key load the same rows: the data settings, the seed (it splits off the
    eval rows) and the trainer (it decides which columns are checked)."""
    return json.dumps([str(config.data), config.seed, config.trainer])


def load_run_data(config: ExperimentConfig) -> tuple[Dataset, Dataset | None]:
    """Train and eval data sets, formatted and checked; eval is None when the config asks for none."""
    data = config.data
    train = load_source(data.train, "data.train")
    evaluation = load_source(data.eval, "data.eval") if data.eval is not None else None
    if data.formatting:
        format_row = resolve_callable(data.formatting, key="data.formatting")
        train = apply_formatting(train, format_row)
        evaluation = apply_formatting(evaluation, format_row) if evaluation is not None else None
    if evaluation is None and data.eval_fraction is not None:
        train, evaluation = split_off_eval(train, data.eval_fraction, config.seed)
    if evaluation is not None and data.eval_rows is not None:
        evaluation = eval_sample(evaluation, data.eval_rows)
    check_columns(train, config.trainer, "data.train")
    if evaluation is not None:
        check_columns(evaluation, config.trainer, "data.eval" if data.eval is not None else "data.train")
    return train, evaluation


def load_source(source: DataSource, key: str) -> Dataset:
    """One source (a local file, a `module:function`, or a hub name), then shuffled and cut to `select`."""
    spec = source.source
    file_format = FILE_FORMATS.get(Path(spec).suffix)
    if file_format is not None:
        dataset = load_file(spec, file_format, source.kwargs, key)
    elif ":" in spec:
        dataset = call_builder(spec, source.kwargs, key)
    else:
        dataset = load_hub(spec, source.split, source.kwargs, key)
    if source.shuffle_seed is not None:
        dataset = dataset.shuffle(seed=source.shuffle_seed)
    if source.select is not None:
        dataset = dataset.select(range(min(source.select, len(dataset))))
    return dataset


def load_file(spec: str, file_format: str, kwargs: dict[str, Any], key: str) -> Dataset:
    import datasets

    if not Path(spec).is_file():
        raise ConfigError(
            f"no such data file '{spec}' (relative paths start from {Path.cwd()})", key=f"{key}.source"
        )
    try:
        loaded = datasets.load_dataset(file_format, data_files=spec, split="train", **kwargs)
    except datasets.exceptions.DatasetGenerationError as error:  # the parser's own message is in the cause
        raise ConfigError(f"cannot read '{spec}': {error.__cause__ or error}", key=f"{key}.source") from None
    return as_dataset(loaded, spec, key)


def call_builder(spec: str, kwargs: dict[str, Any], key: str) -> Dataset:
    """A `module:function` data builder, called with the source's kwargs."""
    from datasets import Dataset

    built = resolve_callable(spec, key=f"{key}.source")(**kwargs)
    if isinstance(built, list):
        return Dataset.from_list(built)
    return as_dataset(built, spec, key)


def load_hub(name: str, split: str, kwargs: dict[str, Any], key: str) -> Dataset:
    import datasets

    try:
        loaded = datasets.load_dataset(name, split=split, **kwargs)
    except OSError as error:  # ConnectionError offline, DatasetNotFoundError for an unknown name
        reason = str(error).splitlines()[0]
        raise ConfigError(
            f"cannot load data set '{name}' from the Hugging Face hub ({reason}); use a local "
            ".jsonl/.json/.csv/.parquet file, a `module:function`, or a data set already in the local cache",
            key=f"{key}.source",
        ) from None
    except ValueError as error:  # an unknown split or config name
        raise ConfigError(f"data set '{name}': {error}", key=key) from None
    return as_dataset(loaded, name, key)


def as_dataset(loaded: object, spec: str, key: str) -> Dataset:
    """One split, not streamed: only that can be shuffled, cut and split into train and eval here."""
    from datasets import Dataset

    if not isinstance(loaded, Dataset):
        raise ConfigError(
            f"'{spec}' gave a {type(loaded).__name__}; expected a datasets.Dataset (one split, not streamed) "
            "or a list of dicts",
            key=f"{key}.source",
        )
    return loaded


def apply_formatting(dataset: Dataset, format_row: Callable[[dict[str, Any]], dict[str, Any]]) -> Dataset:
    """Map each row through the formatting function. The original columns go, except those the
    function returns: `datasets` removes `remove_columns` before adding the function's output."""

    def checked(row: dict[str, Any], index: int) -> dict[str, Any]:
        try:
            return format_row(row)
        except Exception as error:
            raise ConfigError(
                f"the formatting function raised {type(error).__name__}: {error} (on row {index})",
                key="data.formatting",
            ) from None

    return dataset.map(checked, with_indices=True, remove_columns=dataset.column_names)


def split_off_eval(train: Dataset, fraction: float, seed: int) -> tuple[Dataset, Dataset]:
    try:
        split = train.train_test_split(test_size=fraction, seed=seed)
    except ValueError as error:  # too few rows to leave both sides non-empty
        raise ConfigError(
            f"cannot hold out {fraction} of {len(train)} rows: {error}", key="data.eval_fraction"
        ) from None
    return split["train"], split["test"]


EVAL_SAMPLE_SEED = 0
"""Fixed, not the run's seed: runs that search over `seed` are still scored on the same rows."""


def eval_sample(evaluation: Dataset, rows: int) -> Dataset:
    """`rows` rows of the eval set, the same ones for every run that shares it."""
    if rows >= len(evaluation):
        return evaluation
    return evaluation.shuffle(seed=EVAL_SAMPLE_SEED).select(range(rows))


def check_columns(dataset: Dataset, trainer: str, key: str) -> None:
    """Fail with the missing columns, what the trainer accepts, and what the data has."""
    options = TRAINER_COLUMNS[trainer]
    found = dataset.column_names
    # Report against the closest option: fewest columns missing, then most columns present.
    closest = min(options, key=lambda option: (len(set(option) - set(found)), -len(set(option) & set(found))))
    missing = [column for column in closest if column not in found]
    if not missing:
        return
    accepted = ", or ".join(" + ".join(f"'{column}'" for column in option) for option in options)
    columns = "column" if len(missing) == 1 else "columns"
    raise ConfigError(
        f"missing {columns} {', '.join(repr(column) for column in missing)}: "
        f"the {trainer} trainer reads {accepted}; "
        f"the data has {', '.join(repr(column) for column in found) or 'no columns'}. "
        "Rename the columns or set data.formatting to a function that returns them",
        key=key,
    )
