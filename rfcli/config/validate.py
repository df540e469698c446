"""Checks that need the libraries: TRL's config class, PEFT's LoraConfig, the named functions, files."""

from __future__ import annotations

import dataclasses
import tempfile
import warnings
from pathlib import Path

from rfcli.config.callables import check_metric_signature, check_reward_signature, resolve_callable
from rfcli.config.errors import ConfigError, did_you_mean
from rfcli.config.schema import DataSource, ExperimentConfig, metric_key

LOCAL_DATA_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")


def validate_run_config(config: ExperimentConfig) -> None:
    """Everything that would otherwise fail later, inside a worker, after other runs began training."""
    from rfcli.models.tiny import check_builtin_source
    from rfcli.trainers.arguments import training_arguments

    with tempfile.TemporaryDirectory() as scratch:
        training_arguments(config, output_dir=scratch)
    check_builtin_source(config.model.name)
    if config.lora is not None:
        validate_lora(config.lora)
        if config.trainer == "grpo" and config.training.get("beta", 0.0):
            # TRL 1.16 copies an adapter named "default" into "ref"; rf's runs are run_<id> on one model.
            raise ConfigError(
                "GRPO with LoRA and a KL term (beta > 0) is not supported yet: leave beta at 0 "
                "or fine-tune fully (no lora)",
                key="training.beta",
            )
    for split, source in (("train", config.data.train), ("eval", config.data.eval)):
        if source is not None:
            validate_source(source, key=f"data.{split}.source")
    if config.data.formatting:
        resolve_callable(config.data.formatting, key="data.formatting")
    for index, reward in enumerate(config.rewards):
        key = f"rewards[{index}].function"
        check_reward_signature(resolve_callable(reward.function, key), reward.function, key)
    validate_metrics(config.eval.metrics)


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


def validate_lora(lora: dict[str, object]) -> None:
    from peft import LoraConfig

    known = {f.name for f in dataclasses.fields(LoraConfig) if f.init}
    for name in lora:
        if name not in known:
            raise ConfigError(
                f"LoraConfig has no field '{name}'{did_you_mean(name, known)}", key=f"lora.{name}"
            )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            LoraConfig(**lora)  # type: ignore[arg-type]
    except (ValueError, TypeError) as error:
        raise ConfigError(f"LoraConfig rejected the settings: {error}", key="lora") from None


def validate_source(source: DataSource, key: str) -> None:
    """Local files must exist and callables must import; hub names are checked when loaded."""
    spec = source.source
    if spec.endswith(LOCAL_DATA_SUFFIXES):
        if not Path(spec).is_file():
            raise ConfigError(f"no such data file '{spec}' (relative paths start from {Path.cwd()})", key=key)
    elif ":" in spec:
        resolve_callable(spec, key=key)
