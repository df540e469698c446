"""Checks that need the libraries: TRL's config class, PEFT's LoraConfig, the named functions, files.

Each check yields the problems it finds, so a file's errors are reported all at once.
"""

from __future__ import annotations

import dataclasses
import tempfile
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from rfcli.config.callables import check_metric_signature, check_reward_signature, resolve_callable
from rfcli.config.errors import ConfigError, did_you_mean
from rfcli.config.fields import LORA_FIELDS, field_errors
from rfcli.config.hardware import hardware_errors
from rfcli.config.kinds import kind_errors
from rfcli.config.schema import FILE_FORMATS, DataSource, ExperimentConfig, metric_key
from rfcli.config.training import training_arguments, training_errors
from rfcli.gpus import machine_gpus
from rfcli.paths import mistaken_kind


def run_config_errors(config: ExperimentConfig) -> Iterator[ConfigError]:
    """Everything that would otherwise fail later, inside a worker, after other runs began training."""
    from rfcli.models.tiny import check_builtin_source

    training = list(training_errors(config))
    yield from training
    if not training:  # TRL's own checks, once rf's pass
        with tempfile.TemporaryDirectory() as scratch:
            yield from _caught(training_arguments, config, scratch)
    yield from hardware_errors(config, machine_gpus())
    yield from _caught(check_builtin_source, config.model.name)
    if config.lora is not None:
        yield from lora_errors(config.lora)
    yield from kind_errors(config)
    for split, source in (("train", config.data.train), ("eval", config.data.eval)):
        if source is not None:
            yield from _caught(validate_source, source, f"data.{split}.source")
    if config.data.formatting:
        yield from _caught(resolve_callable, config.data.formatting, "data.formatting")
    for index, reward in enumerate(config.rewards):
        yield from _caught(validate_reward, reward.function, f"rewards[{index}].function")
    yield from _caught(validate_metrics, config.eval.metrics)


def validate_metrics(specs: list[str]) -> None:
    """Each generation metric imports, takes keywords, and logs under a name of its own."""
    logged_as: dict[str, str] = {}
    for index, spec in enumerate(specs):
        key = f"eval.metrics[{index}]"
        check_metric_signature(resolve_callable(spec, key), spec, key)
        name = metric_key(spec)
        if name in logged_as:
            raise ConfigError(
                f"'{spec}' and '{logged_as[name]}' would both be logged as {name}: "
                "list each metric once, and give functions of the same name in two modules other names",
                key=key,
            )
        logged_as[name] = spec


def _caught(check: Callable[..., Any], *args: Any) -> Iterator[ConfigError]:
    """A check written to raise, as one of the problems found."""
    try:
        check(*args)
    except ConfigError as error:
        yield error


def validate_reward(spec: str, key: str) -> None:
    check_reward_signature(resolve_callable(spec, key), spec, key)


def lora_errors(lora: dict[str, object]) -> Iterator[ConfigError]:
    from peft import LoraConfig

    known = {f.name for f in dataclasses.fields(LoraConfig) if f.init}
    unknown = [name for name in lora if name not in known]
    for name in unknown:
        yield ConfigError(f"LoraConfig has no field '{name}'{did_you_mean(name, known)}", key=f"lora.{name}")
    ranges = list(field_errors(lora, LORA_FIELDS, "lora"))
    yield from ranges
    if unknown or ranges:
        return
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            LoraConfig(**lora)  # type: ignore[arg-type]
    except (ValueError, TypeError) as error:
        yield ConfigError(f"LoraConfig rejected the settings: {error}", key="lora")


def validate_source(source: DataSource, key: str) -> None:
    """Local files must exist and callables must import; hub names are checked when loaded."""
    spec = source.source
    if spec.endswith(tuple(FILE_FORMATS)):
        check_data_file(spec, key)
    elif ":" in spec:
        resolve_callable(spec, key=key)


def check_data_file(spec: str, key: str) -> None:
    """A local data file is a file: a folder, a named pipe or a link to nothing is named as such."""
    mistaken = mistaken_kind(Path(spec), "a file")
    if mistaken is not None:
        raise ConfigError(f"data file '{spec}' {mistaken}; give the path of a data file", key=key)
    if not Path(spec).is_file():
        raise ConfigError(f"no such data file '{spec}' (relative paths start from {Path.cwd()})", key=key)
