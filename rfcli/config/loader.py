"""Read an experiment file with OmegaConf: YAML, `${...}` interpolation, dotted key=value overrides."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from yaml import YAMLError

from rfcli.config.errors import ConfigError


def load_raw_config(path: Path, overrides: list[str]) -> dict[str, Any]:
    """The file's content with overrides applied and interpolations resolved, as plain containers."""
    source = str(path)
    config = read_config_file(path)
    config = apply_overrides(config, overrides, source)
    try:
        resolved = OmegaConf.to_container(config, resolve=True)
    except OmegaConfBaseException as error:
        key = getattr(error, "full_key", None) or None
        raise ConfigError(f"cannot resolve interpolation: {error.msg}", source=source, key=key) from error
    assert isinstance(resolved, dict)
    return {str(key): value for key, value in resolved.items()}


def read_config_file(path: Path) -> DictConfig:
    """The file as YAML settings; each way it can fail says what to fix."""
    source = str(path)
    if path.is_dir():
        raise ConfigError(
            "is a folder; pass the path of an experiment YAML file in it (see configs/)", source=source
        )
    if not path.is_file():
        raise ConfigError("no such file; pass the path of an experiment YAML (see configs/)", source=source)
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as error:
        raise ConfigError(
            f"not UTF-8 text (byte {error.object[error.start]:#04x} at offset {error.start}); "
            "save it as UTF-8 (an experiment file is YAML text)",
            source=source,
        ) from None
    try:
        shape = yaml.safe_load(text)
        config = OmegaConf.create(text)  # parsed again with OmegaConf's own rules (1e-3 is a float)
    except YAMLError as error:
        raise ConfigError(yaml_problem(error, text), source=source) from None
    if shape is not None and not isinstance(shape, dict):
        raise ConfigError(
            f"expected a mapping of settings (name: ..., trainer: ...), got a {type(shape).__name__}: "
            f"{text.strip()[:40]!r}",
            source=source,
        )
    assert isinstance(config, DictConfig)
    return config


def yaml_problem(error: YAMLError, text: str) -> str:
    """The YAML parser's complaint, with the line; a tab in the indentation is named as such."""
    mark = getattr(error, "problem_mark", None)
    line = mark.line + 1 if mark is not None else None
    where = f" on line {line}" if line else ""
    lines = text.splitlines()
    if line is not None and line <= len(lines) and "\t" in lines[line - 1]:
        return f"line {line} has a tab character; YAML indents with spaces only"
    problem = getattr(error, "problem", None) or str(error)
    return f"not valid YAML{where}: {problem}"


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
