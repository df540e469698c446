"""A run's TRL config (`SFTConfig`, `DPOConfig`, `GRPOConfig`): the user's fields over rf's defaults."""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from rfcli.config.errors import ConfigError, did_you_mean, raise_all
from rfcli.config.fields import TRAINING_FIELDS, field_errors
from rfcli.config.kinds import load_class, trainer_kind
from rfcli.config.migrations import moved_field

if TYPE_CHECKING:
    from transformers import TrainingArguments

    from rfcli.config.schema import ExperimentConfig

FORCED = {"report_to": "none", "save_strategy": "no", "disable_tqdm": True}
"""rf logs to MLflow, saves at chunk boundaries and draws its own progress: these are not the user's."""


def config_class(trainer: str) -> type[TrainingArguments]:
    cls: type[TrainingArguments] = load_class(trainer_kind(trainer).config_class)
    return cls


def rf_defaults(config: ExperimentConfig) -> dict[str, Any]:
    """Defaults that differ from TRL's, each for a measured reason (see FACTS in the README); the
    trainer kind adds its own."""
    import torch

    on_gpu = torch.cuda.is_available()
    defaults: dict[str, Any] = {
        "seed": config.seed,
        "logging_steps": 1,  # every step's loss and learning rate, so runs compare step by step
        "logging_nan_inf_filter": False,  # a NaN loss must show (and fail the run), not be papered over
        "dataloader_num_workers": 0,
        "use_cpu": not on_gpu,
    }
    if "bf16" not in config.training and "fp16" not in config.training:
        defaults["bf16"] = on_gpu and torch.cuda.is_bf16_supported()
    if not on_gpu:
        defaults["activation_checkpointing"] = False  # nearly halves step time on small CPU models
    return {**defaults, **trainer_kind(config.trainer).defaults}


def training_errors(config: ExperimentConfig) -> Iterator[ConfigError]:
    """Fields the TRL config class does not have (those TRL moved answered with the move), fields rf
    manages, and values out of range."""
    cls = config_class(config.trainer)
    known = {f.name for f in dataclasses.fields(cls) if f.init}
    for name in config.training:
        moved = moved_field(config.trainer, name) if name not in known else None
        if moved is not None:
            yield ConfigError(moved.message(cls.__name__), key=f"training.{name}")
        elif name not in known:
            hint = did_you_mean(name, known)
            yield ConfigError(f"{cls.__name__} has no field '{name}'{hint}", key=f"training.{name}")
        elif name in FORCED or name == "output_dir":
            yield ConfigError(f"'{name}' is managed by rf; remove it", key=f"training.{name}")
    yield from field_errors(config.training, TRAINING_FIELDS, "training")


def training_arguments(config: ExperimentConfig, output_dir: str) -> TrainingArguments:
    """Build the TRL config: every problem of `training` is raised at once, and what TRL itself
    rejects becomes a ConfigError on `training`."""
    raise_all(training_errors(config))
    cls = config_class(config.trainer)
    values = {**rf_defaults(config), **config.training, **FORCED, "output_dir": output_dir}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return cls(**values)
    except (ValueError, TypeError) as error:
        raise ConfigError(f"{cls.__name__} rejected the settings: {error}", key="training") from None
