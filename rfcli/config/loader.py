"""Read an experiment file with OmegaConf: YAML, `${...}` interpolation, dotted key=value overrides."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from yaml import YAMLError

from rfcli.config.errors import ConfigError
from rfcli.config.search import MARKERS
from rfcli.paths import mistaken_kind


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
        found = mistaken_kind(path, "a file") or "no such file"
        raise ConfigError(f"{found}; pass the path of an experiment YAML (see configs/)", source=source)
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
    except YAMLError as error:
        raise ConfigError(yaml_problem(error, text), source=source) from None
    except RecursionError:  # the parser recurses once per level
        raise ConfigError(too_deep("values nest"), source=source) from None
    check_size(shape, source=source)
    config = OmegaConf.create(text)  # parsed again with OmegaConf's own rules (1e-3 is a float)
    if shape is not None and not isinstance(shape, dict):
        raise ConfigError(
            f"expected a mapping of settings (name: ..., trainer: ...), got a {type(shape).__name__}: "
            f"{text.strip()[:40]!r}",
            source=source,
        )
    assert isinstance(config, DictConfig)
    return config


MAX_DEPTH = 50
"""Levels of nesting a file or an override may have; the deepest shipped config has 6. Deeper
values would overflow the recursion of every reader after the parser (OmegaConf, the plan)."""
MAX_VALUES = 100_000
"""Values (mappings, lists and scalars) a file may hold once YAML's aliases are expanded: a few
`&anchor`s that repeat each other double with each level, a 1 KB file into billions."""


def check_size(node: Any, *, source: str, key: str | None = None) -> None:
    """Refuse values nested deeper than `MAX_DEPTH` or holding more than `MAX_VALUES` values,
    counted without recursion and without expanding more than that."""
    pending, seen = [(node, 1)], 0
    while pending:
        value, depth = pending.pop()
        seen += 1
        if depth > MAX_DEPTH:
            raise ConfigError(too_deep("values nest"), source=source, key=key)
        if seen > MAX_VALUES:
            raise ConfigError(
                f"holds more than {MAX_VALUES:,} values (YAML aliases repeat what they point to); "
                "an experiment file holds a few hundred",
                source=source,
                key=key,
            )
        children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
        pending.extend((child, depth + 1) for child in children)


def too_deep(what: str) -> str:
    """'values nest more than 50 levels deep; ...' (`what`: 'values nest', 'its key nests')."""
    return f"{what} more than {MAX_DEPTH} levels deep; an experiment file nests a few"


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
        key = key.strip()
        shown = f"override '{override:.80}'"
        if key.count(".") >= MAX_DEPTH:
            raise ConfigError(f"{shown}: {too_deep('its key nests')}", source=source)
        try:
            value = yaml.safe_load(text) if text.strip() else None
        except YAMLError as error:
            raise ConfigError(f"cannot apply {shown}: {yaml_problem(error, text)}", source=source) from None
        except RecursionError:
            raise ConfigError(f"{shown}: {too_deep('its value nests')}", source=source) from None
        check_size(value, source=source, key=key)
        check_not_inside_axis(config, key, shown, source)
        try:
            parsed = OmegaConf.to_container(OmegaConf.from_dotlist([f"value={text}"]))
            assert isinstance(parsed, dict)
            OmegaConf.update(config, key, parsed["value"], merge=False, force_add=True)
        except (OmegaConfBaseException, YAMLError, TypeError, ValueError) as error:
            message = str(error).splitlines()[0]
            raise ConfigError(f"cannot apply {shown}: {message}", source=source) from None
    return config


def check_not_inside_axis(config: DictConfig, key: str, shown: str, source: str) -> None:
    """`lora.r=16` where `lora` is `{grid: [...]}` would add a key beside the marker, and the axis
    would no longer be one: say how to reach into its options instead."""
    parts = key.split(".")
    for depth in range(1, len(parts)):
        where = ".".join(parts[:depth])
        try:
            node = OmegaConf.select(config, where, default=None, throw_on_resolution_failure=False)
        except OmegaConfBaseException:  # a path OmegaConf cannot follow: `update` says why
            return
        if not isinstance(node, DictConfig) or len(node) != 1:
            continue
        (marker,) = node.keys()
        options = node.get(marker)
        if marker in MARKERS and isinstance(options, ListConfig) and parts[depth] != marker:
            rest = ".".join(parts[depth:])
            raise ConfigError(
                f"{shown}: {where} is a search axis ({{{marker}: [...]}} of {len(options)} options); set "
                f"one option's value by its index ({where}.{marker}.0.{rest}=...) or give the whole axis "
                f"({where}=...)",
                source=source,
            )
