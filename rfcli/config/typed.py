"""A concrete config -> the typed `ExperimentConfig`, with every value the schema rejects found, each
named by its key path as a user writes it (`rewards[0].weight`)."""

from __future__ import annotations

import copy
import dataclasses
import functools
from collections.abc import Iterator
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

from rfcli.config.errors import ConfigError, did_you_mean, join_key, raise_all
from rfcli.config.schema import ExperimentConfig


def without_keys(raw: dict[str, Any], keys: list[str | None]) -> dict[str, Any] | None:
    """A copy of `raw` without the settings at dotted `keys`; None when a key is not a plain path
    of mappings (a list item, or no key)."""
    if any(key is None or "[" in key for key in keys):
        return None
    rest = copy.deepcopy(raw)
    for key in keys:
        assert key is not None
        *parents, name = key.split(".")
        node: Any = rest
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(name, None)
    return rest


def to_typed_config(raw: dict[str, Any]) -> ExperimentConfig:
    normalized = normalize_shorthands(raw)
    raise_all(schema_errors(normalized))
    try:
        typed = OmegaConf.to_object(OmegaConf.merge(structured_schema(), normalized))
    except MissingMandatoryValue as error:
        raise ConfigError("missing: this setting is required", key=error.full_key) from None
    except OmegaConfBaseException as error:
        raise schema_error(error) from None
    except ValueError as error:  # the schema's own checks, one 'key: message' line each
        raise_all(problem_error(line) for line in str(error).splitlines())
        raise
    assert isinstance(typed, ExperimentConfig)
    return typed


@functools.cache
def structured_schema() -> DictConfig:
    """The schema as OmegaConf builds it, once: building it takes tens of milliseconds, three times
    per run of a plan, and `OmegaConf.merge` copies it rather than changing it."""
    return OmegaConf.structured(ExperimentConfig)


def problem_error(line: str) -> ConfigError:
    key, _, message = line.partition(": ")
    return ConfigError(message, key=key) if message else ConfigError(line)


def schema_errors(raw: dict[str, Any]) -> Iterator[ConfigError]:
    """Each value the schema rejects, found by merging the file into it one part at a time:
    OmegaConf alone stops at the first."""
    yield from _merge_errors(structured_schema(), raw, [])


def _merge_errors(schema: DictConfig, value: Any, path: list[str]) -> Iterator[ConfigError]:
    whole = _merge_error(schema, value, path)
    if whole is None:
        return
    found: list[ConfigError] = []
    if isinstance(value, dict):  # look for the parts that are wrong, each on its own
        for key, child in value.items():
            found.extend(_merge_errors(schema, child, [*path, str(key)]))
    elif isinstance(value, list) and isinstance(OmegaConf.select(schema, ".".join(path)), ListConfig):
        # OmegaConf names a key inside a list item without the item's index
        for index, item in enumerate(value):
            error = _merge_error(schema, [item], path)
            if error is not None:
                inner = error.key.rpartition(".")[2] if error.key else None
                where = join_key(".".join(path), index)
                found.append(ConfigError(error.message, key=join_key(where, inner) if inner else where))
    yield from found or [whole]


def _merge_error(schema: DictConfig, value: Any, path: list[str]) -> ConfigError | None:
    """What the schema says to `value` at `path`, or None when it takes it."""
    nested = value
    for part in reversed(path):
        nested = {part: nested}
    try:
        OmegaConf.merge(schema, nested)
    except MissingMandatoryValue:  # reported once the whole file is merged
        return None
    except OmegaConfBaseException as error:
        return schema_error(error)
    except TypeError:  # OmegaConf's "Cannot merge incompatible container types": a list for a mapping
        wanted = "a list" if isinstance(value, dict) else "a mapping of settings (key: value)"
        return ConfigError(f"expected {wanted}, got {value!r:.60}", key=".".join(path) or None)
    return None


def normalize_shorthands(raw: dict[str, Any]) -> dict[str, Any]:
    """Accept `train: file.jsonl` for `train: {source: file.jsonl}` and a bare `module:function` reward."""
    normalized = dict(raw)
    data = normalized.get("data")
    if isinstance(data, dict):
        data = dict(data)
        for split in ("train", "eval"):
            if isinstance(data.get(split), str):
                data[split] = {"source": data[split]}
        normalized["data"] = data
    rewards = normalized.get("rewards")
    if isinstance(rewards, list):
        normalized["rewards"] = [{"function": r} if isinstance(r, str) else r for r in rewards]
    return normalized


def schema_error(error: OmegaConfBaseException) -> ConfigError:
    """OmegaConf's error, rephrased for a user: the key path, what was wrong, the closest valid key."""
    key = str(getattr(error, "full_key", "") or "")
    message = str(getattr(error, "msg", error)).splitlines()[0]
    if "not in" in message:
        parent, _, name = key.rpartition(".")
        fields = schema_fields(parent)
        return ConfigError(f"unknown key '{name}'{did_you_mean(name, fields)}", key=key)
    return ConfigError(message, key=key or None)


def schema_fields(path: str) -> list[str]:
    """Field names of the schema dataclass at a dotted path ('' is the top)."""
    cls: Any = ExperimentConfig
    for part in filter(None, path.split(".")):
        field_types = {f.name: f.type for f in dataclasses.fields(cls)}
        name = str(field_types.get(part, ""))
        cls = next((c for c in _SCHEMA_CLASSES if c.__name__ in name), None)
        if cls is None:
            return []
    return [f.name for f in dataclasses.fields(cls)]


def _schema_classes() -> list[type]:
    from rfcli.config import schema

    return [
        value
        for value in vars(schema).values()
        if dataclasses.is_dataclass(value) and isinstance(value, type)
    ]


_SCHEMA_CLASSES = _schema_classes()
