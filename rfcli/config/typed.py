"""A concrete config -> the typed `ExperimentConfig`, with every value the schema rejects found, each
named by its key path as a user writes it (`rewards[0].weight`)."""

from __future__ import annotations

import copy
import dataclasses
import functools
import re
import types
import typing
from collections.abc import Iterator
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException, ValidationError

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
                key = join_key(where, inner) if inner else where
                given = item.get(inner, error) if inner and isinstance(item, dict) else item
                found.append(type_error(key, given) or ConfigError(error.message, key=key))
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
    except ValidationError as error:  # a value of the wrong type: said in the schema's words
        key = str(error.full_key or "") or ".".join(path)
        return type_error(key, _setting(nested, key, error)) or schema_error(error)
    except OmegaConfBaseException as error:
        return schema_error(error)
    except TypeError:  # OmegaConf's "Cannot merge incompatible container types": a list for a mapping
        wanted = "a list" if isinstance(value, dict) else "a mapping of settings (key: value)"
        return ConfigError(f"expected {wanted}, got {value!r:.60}", key=".".join(path) or None)
    return None


def type_error(key: str, given: Any) -> ConfigError | None:
    """'expected an integer, got 'many'' for the setting at `key`, from its type in the schema;
    None when the schema does not say (a setting TRL or PEFT checks), or the value is not known
    (`given` is the OmegaConf error then)."""
    expected = expected_type(key)
    if expected is None or isinstance(given, OmegaConfBaseException):
        return None
    return ConfigError(f"expected {expected}, got {given!r:.60}", key=key)


def expected_type(key: str) -> str | None:
    """What the schema takes at a dotted key ('rewards[0].weight'), in words."""
    annotation = field_type(key)
    if annotation is None:
        return None
    optional = type(None) in typing.get_args(annotation)
    base = _required(annotation)
    words = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(base)
    if words is None and typing.get_origin(base) is list:
        words = "a list"
    elif words is None and (typing.get_origin(base) is dict or dataclasses.is_dataclass(base)):
        words = "a mapping of settings (key: value)"
    if words is None:
        return None
    return f"{words} or null" if optional else words


def _setting(config: Any, key: str, missing: Any) -> Any:
    """The value at a dotted key ('policy.rungs[1]') of plain containers, or `missing`."""
    node = config
    for part in _key_parts(key):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return missing
    return node


def _key_parts(key: str) -> list[str]:
    """'rewards[0].weight' -> ['rewards', '0', 'weight']."""
    return re.findall(r"[^.\[\]]+", key)


def field_type(key: str) -> Any:
    """The schema's annotation of the setting at a dotted key, list items by index; None when the
    schema has no such setting (or leaves it to TRL or PEFT: a key inside `training`, `lora`)."""
    annotation: Any = ExperimentConfig
    for part in _key_parts(key):
        base = _required(annotation)
        if part.isdigit() and typing.get_origin(base) is list:
            annotation = typing.get_args(base)[0]
        elif dataclasses.is_dataclass(base) and isinstance(base, type):
            annotation = typing.get_type_hints(base).get(part)
        else:
            return None
        if annotation is None:
            return None
    return annotation


def _required(annotation: Any) -> Any:
    """`X` of `X | None`."""
    args = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
    return args[0] if typing.get_origin(annotation) in (typing.Union, types.UnionType) else annotation


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
    cls = _required(field_type(path)) if path else ExperimentConfig
    if not (dataclasses.is_dataclass(cls) and isinstance(cls, type)):
        return []
    return [f.name for f in dataclasses.fields(cls)]
