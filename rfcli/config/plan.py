"""Compile an experiment file into a run plan: one fully resolved, validated config per run."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

from rfcli.config.errors import ConfigError, did_you_mean
from rfcli.config.loader import load_raw_config
from rfcli.config.schema import ExperimentConfig
from rfcli.config.search import check_axes, grid_configs, random_configs
from rfcli.config.validate import validate_run_config


@dataclass(frozen=True)
class PlannedRun:
    id: int
    config: ExperimentConfig
    raw: dict[str, Any]
    """The run's concrete config as plain containers (what clones and MLflow params start from)."""

    @property
    def fingerprint(self) -> str:
        """A short hash of the config: the same settings always give the same fingerprint."""
        return config_fingerprint(self.raw)

    def flat(self) -> dict[str, Any]:
        return flatten(self.raw)


@dataclass(frozen=True)
class RunPlan:
    source: str
    runs: list[PlannedRun]

    @property
    def name(self) -> str:
        return self.runs[0].config.name

    def varying_keys(self) -> list[str]:
        """Dotted keys whose values differ between runs, in file order."""
        return varying_keys([run.flat() for run in self.runs])


def varying_keys(flats: list[dict[str, Any]]) -> list[str]:
    """Dotted keys whose values differ between these flattened configs, in first-seen order."""
    keys = list(dict.fromkeys(key for flat in flats for key in flat))
    return [key for key in keys if len({json.dumps(flat.get(key), sort_keys=True) for flat in flats}) > 1]


def compile_plan(path: Path, overrides: list[str]) -> RunPlan:
    """YAML + overrides -> every configuration of the search space, each validated."""
    source = str(path)
    try:
        raw = load_raw_config(path, overrides)
        search = raw.get("search") or {}
        method = search.get("method", "grid") if isinstance(search, dict) else "grid"
        space = {key: value for key, value in raw.items() if key != "search"}
        check_axes(space, method)
        if method == "random":
            num_samples = search.get("num_samples")
            if not isinstance(num_samples, int) or num_samples < 1:
                raise ConfigError(
                    "random search needs num_samples: a positive integer", key="search.num_samples"
                )
            concrete = random_configs(space, num_samples, seed=int(raw.get("seed", 42)))
        else:
            concrete = grid_configs(space)
        runs = []
        for index, values in enumerate(concrete, start=1):
            values["search"] = search
            runs.append(PlannedRun(id=index, config=build_run_config(values), raw=values))
        return RunPlan(source=source, runs=runs)
    except ConfigError as error:
        raise error.located(source) from None


def build_run_config(raw: dict[str, Any]) -> ExperimentConfig:
    """One concrete config -> typed, checked against the schema, TRL, PEFT and the named functions."""
    config = to_typed_config(raw)
    validate_run_config(config)
    return config


def to_typed_config(raw: dict[str, Any]) -> ExperimentConfig:
    schema = OmegaConf.structured(ExperimentConfig)
    try:
        merged = OmegaConf.merge(schema, normalize_shorthands(raw))
        typed = OmegaConf.to_object(merged)
    except MissingMandatoryValue as error:
        raise ConfigError("missing: this setting is required", key=error.full_key) from None
    except OmegaConfBaseException as error:
        raise schema_error(error) from None
    except ValueError as error:
        key, _, message = str(error).partition(": ")
        raise ConfigError(message or key, key=key if message else None) from None
    assert isinstance(typed, ExperimentConfig)
    return typed


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


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """Nested mappings -> dotted keys; lists stay values (they are one setting)."""
    if isinstance(node, dict) and node:
        flat: dict[str, Any] = {}
        for key, value in node.items():
            flat.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return flat
    return {prefix: node}


def config_fingerprint(raw: dict[str, Any]) -> str:
    return hashlib.sha1(json.dumps(raw, sort_keys=True, default=str).encode()).hexdigest()[:8]
