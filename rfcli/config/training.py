"""A run's TRL config (`SFTConfig`, `DPOConfig`, `GRPOConfig`): the user's fields over rf's defaults."""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from rfcli import gpus as machine
from rfcli.config.errors import ConfigError, did_you_mean, raise_all
from rfcli.config.fields import TRAINING_FIELDS, field_errors
from rfcli.config.kinds import load_class, trainer_kind
from rfcli.config.migrations import moved_field
from rfcli.gpus import Gpu, mixed_precision_default

if TYPE_CHECKING:
    from transformers import TrainingArguments

    from rfcli.config.schema import ExperimentConfig

FORCED = {"report_to": "none", "save_strategy": "no", "disable_tqdm": True}
"""rf logs to MLflow, saves at chunk boundaries and draws its own progress: these are not the user's."""


def config_class(trainer: str) -> type[TrainingArguments]:
    cls: type[TrainingArguments] = load_class(trainer_kind(trainer).config_class)
    return cls


def rf_defaults(config: ExperimentConfig, gpus: tuple[Gpu, ...]) -> dict[str, Any]:
    """Defaults that differ from TRL's, each for a measured reason (see FACTS in the README), on a
    machine with these GPUs (none: the CPU); the trainer kind adds its own."""
    defaults: dict[str, Any] = {
        "seed": config.seed,
        "logging_steps": 1,  # every step's loss and learning rate, so runs compare step by step
        "logging_nan_inf_filter": False,  # a NaN loss must show (and fail the run), not be papered over
        "dataloader_num_workers": 0,
        "use_cpu": not gpus,
        # TRL turns it on. It trades 20-30% of a LoRA step on small and mid-size models on a GPU (and
        # nearly half on a CPU) for activation memory those runs do not need; a run that does (a
        # large model, long rows) sets `training.activation_checkpointing: true`.
        "activation_checkpointing": False,
    }
    if "bf16" not in config.training and "fp16" not in config.training:
        defaults["bf16"] = mixed_precision_default(gpus)
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


def training_arguments(
    config: ExperimentConfig, output_dir: str, *, on_device: bool = False
) -> TrainingArguments:
    """Build the TRL config: every problem of `training` is raised at once, and what TRL itself
    rejects becomes a ConfigError on `training`.

    Only a worker builds it `on_device`, on the GPU it holds. Anywhere else (the plan's checks in the
    controller) the config is built for the CPU, so that TRL's device set-up takes no CUDA context,
    with rf's defaults for this machine's GPUs as the child process of `machine_gpus` reports them;
    what TRL would check on the device is checked in `hardware.py`."""
    raise_all(training_errors(config))
    cls = config_class(config.trainer)
    gpus = machine.own_gpus() if on_device else machine.machine_gpus()
    values = {**rf_defaults(config, gpus), **config.training, **FORCED, "output_dir": output_dir}
    if not on_device:
        values["use_cpu"] = True
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return cls(**values)
    except (ValueError, TypeError) as error:
        raise ConfigError(f"{cls.__name__} rejected the settings: {error}", key="training") from None
