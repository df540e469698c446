"""Read an experiment file with OmegaConf: YAML, `${...}` interpolation, dotted key=value overrides."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from yaml import YAMLError

from rfcli.config.errors import ConfigError


def load_raw_config(path: Path, overrides: list[str]) -> dict[str, Any]:
    """The file's content with overrides applied and interpolations resolved, as plain containers."""
    source = str(path)
    if not path.is_file():
        raise ConfigError("no such file; pass the path of an experiment YAML (see configs/)", source=source)
    try:
        config = OmegaConf.load(path)
    except YAMLError as error:
        raise ConfigError(f"not valid YAML: {error}", source=source) from error
    if not isinstance(config, DictConfig):
        raise ConfigError("expected a mapping of settings at the top of the file", source=source)
    config = apply_overrides(config, overrides, source)
    try:
        resolved = OmegaConf.to_container(config, resolve=True)
    except OmegaConfBaseException as error:
        key = getattr(error, "full_key", None) or None
        raise ConfigError(f"cannot resolve interpolation: {error.msg}", source=source, key=key) from error
    assert isinstance(resolved, dict)
    return {str(key): value for key, value in resolved.items()}


def apply_overrides(config: DictConfig, overrides: list[str], source: str) -> DictConfig:
    """Set each `key.path=value` (list items by index: `lora.grid.0.r=16`); values are parsed as
    YAML, so `training.learning_rate={grid: [1e-3, 1e-4]}` turns a value into an axis."""
    for override in overrides:
        key, sep, text = override.partition("=")
        if not sep or not key.strip():
            raise ConfigError(
                f"override '{override}' is not key=value (e.g. training.learning_rate=3e-4)", source=source
            )
        try:
            parsed = OmegaConf.to_container(OmegaConf.from_dotlist([f"value={text}"]))
            assert isinstance(parsed, dict)
            value = parsed["value"]
            OmegaConf.update(config, key.strip(), value, merge=False, force_add=True)
        except (OmegaConfBaseException, YAMLError, TypeError, ValueError) as error:
            message = str(error).splitlines()[0]
            raise ConfigError(f"cannot apply override '{override}': {message}", source=source) from None
    return config
