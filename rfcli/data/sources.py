"""A run's data sets: each source loaded, shuffled and cut, formatted, split, and checked against the
columns its trainer reads, so a wrong column fails before training rather than deep inside TRL."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rfcli.config.callables import call_user_function, resolve_callable
from rfcli.config.errors import ConfigError
from rfcli.config.kinds import trainer_kind
from rfcli.config.schema import FILE_FORMATS
from rfcli.config.validate import check_data_file

if TYPE_CHECKING:
    from datasets import Dataset

    from rfcli.config.schema import DataSource, ExperimentConfig


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
        train = apply_formatting(train, data.formatting)
        evaluation = apply_formatting(evaluation, data.formatting) if evaluation is not None else None
    if evaluation is None and data.eval_fraction is not None:
        train, evaluation = split_off_eval(train, data.eval_fraction, config.seed)
    if evaluation is not None and data.eval_rows is not None:
        evaluation = eval_sample(evaluation, data.eval_rows)
    check_columns(train, config.trainer, "data.train")
    if evaluation is not None:
        check_columns(evaluation, config.trainer, "data.eval" if data.eval is not None else "data.train")
        if config.eval.metrics:
            check_prompt_columns(evaluation)
    return train, evaluation


def load_source(source: DataSource, key: str) -> Dataset:
    """One source (a local file, a `module:function`, or a hub name), then shuffled and cut to `select`."""
    spec = source.source
    file_format = FILE_FORMATS.get(Path(spec).suffix)
    if file_format is not None:
        dataset = load_file(spec, file_format, source.kwargs, key)
    elif ":" in spec:
        dataset = call_builder(spec, source.kwargs, key)
    elif Path(spec).is_file():
        raise ConfigError(
            f"'{spec}' is a local file, but rf reads data files ending in {', '.join(FILE_FORMATS)}",
            key=f"{key}.source",
        )
    else:
        dataset = load_hub(spec, source.split, source.kwargs, key)
    if source.shuffle_seed is not None:
        dataset = dataset.shuffle(seed=source.shuffle_seed)
    if source.select is not None:
        dataset = dataset.select(range(min(source.select, len(dataset))))
    if len(dataset) == 0:
        raise ConfigError(f"'{spec}' gave no rows; a run needs at least one", key=f"{key}.source")
    return dataset


def load_file(spec: str, file_format: str, kwargs: dict[str, Any], key: str) -> Dataset:
    import datasets

    check_data_file(spec, f"{key}.source")
    if Path(spec).stat().st_size == 0:
        raise ConfigError(f"data file '{spec}' is empty", key=f"{key}.source")
    if file_format == "text" and first_line_is_json(Path(spec)):
        raise ConfigError(
            f"'{spec}' is read as plain text, one 'text' row per line, but its lines are JSON objects: "
            f"name it {Path(spec).with_suffix('.jsonl').name} to read their fields as columns",
            key=f"{key}.source",
        )
    try:
        loaded = datasets.load_dataset(file_format, data_files=spec, split="train", **kwargs)
    except datasets.exceptions.DatasetGenerationError as error:  # the parser's own message is in the cause
        raise ConfigError(f"cannot read '{spec}': {error.__cause__ or error}", key=f"{key}.source") from None
    return as_dataset(loaded, spec, key)


def first_line_is_json(path: Path) -> bool:
    """Whether the file's first line that holds anything is a JSON object (JSON lines misnamed);
    at most 64 KiB of it is read."""
    with path.open(encoding="utf-8", errors="replace") as lines:
        first = ""
        while not first.strip() and (line := lines.readline(1 << 16)):
            first = line
    try:
        return isinstance(json.loads(first), dict)
    except ValueError:
        return False


def call_builder(spec: str, kwargs: dict[str, Any], key: str) -> Dataset:
    """A `module:function` data builder, called with the source's kwargs."""
    from datasets import Dataset

    builder = resolve_callable(spec, key=f"{key}.source")
    built = call_user_function(builder, spec, f"{key}.source", kwargs=kwargs)
    if isinstance(built, list):
        if not all(isinstance(row, dict) for row in built):
            types = sorted({type(row).__name__ for row in built if not isinstance(row, dict)})
            raise ConfigError(
                f"'{spec}' gave a list holding {', '.join(types)}; expected one dict per row",
                key=f"{key}.source",
            )
        return Dataset.from_list(built)
    return as_dataset(built, spec, key)


def load_hub(name: str, split: str, kwargs: dict[str, Any], key: str) -> Dataset:
    import datasets

    try:
        loaded = datasets.load_dataset(name, split=split, **kwargs)
    except OSError as error:  # ConnectionError offline, DatasetNotFoundError for an unknown name
        raise ConfigError(
            f"cannot load data set '{name}' from the Hugging Face hub ({error}); use a local "
            f"{'/'.join(FILE_FORMATS)} file, a `module:function`, or a data set already in the local cache",
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


def apply_formatting(dataset: Dataset, spec: str) -> Dataset:
    """Map each row through the formatting function `spec`. The original columns go, except those the
    function returns: `datasets` removes `remove_columns` before adding the function's output."""
    format_row = resolve_callable(spec, key="data.formatting")

    def checked(row: dict[str, Any], index: int) -> dict[str, Any]:
        formatted = call_user_function(format_row, spec, "data.formatting", (row,), context=f"on row {index}")
        if not isinstance(formatted, dict):
            raise ConfigError(
                f"'{spec}' returned a {type(formatted).__name__} on row {index}; expected a dict of "
                "the trainer's columns",
                key="data.formatting",
            )
        return formatted

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
    """Fail with the missing columns, what the trainer accepts, and what the data has; then with a
    column that holds something other than text or chat messages."""
    options = trainer_kind(trainer).columns
    found = dataset.column_names
    # Report against the closest option: fewest columns missing, then most columns present.
    closest = min(options, key=lambda option: (len(set(option) - set(found)), -len(set(option) & set(found))))
    missing = [column for column in closest if column not in found]
    if not missing:
        for column in closest:
            check_text_column(dataset, column, key)
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


def check_text_column(dataset: Dataset, column: str, key: str) -> None:
    """A trainer's column holds text, or (except 'text') a list of chat messages."""
    from datasets import Value

    feature = dataset.features[column]
    is_text = isinstance(feature, Value) and feature.dtype in ("string", "large_string")
    if is_text or (column != "text" and not isinstance(feature, Value)):
        return
    wanted = "text (strings)" if column == "text" else "text (strings) or lists of chat messages"
    raise ConfigError(
        f"column '{column}' holds {feature.dtype} values, e.g. {dataset[0][column]!r}; it must hold {wanted}",
        key=key,
    )


PROMPT_COLUMNS = ("prompt", "messages")
"""What generation metrics complete: a row's prompt, or its conversation up to the last answer."""


def check_prompt_columns(dataset: Dataset) -> None:
    found = dataset.column_names
    if not set(PROMPT_COLUMNS) & set(found):
        raise ConfigError(
            "generation metrics complete each eval row's 'prompt' or 'messages'; the eval data has "
            f"{', '.join(repr(column) for column in found) or 'no columns'}. Set data.formatting to a "
            "function that returns prompt/completion rows",
            key="eval.metrics",
        )
