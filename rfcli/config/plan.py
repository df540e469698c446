"""Compile an experiment file into a run plan: one fully resolved, validated config per run."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rfcli.config.errors import ConfigError, raise_all
from rfcli.config.loader import load_raw_config
from rfcli.config.model_search import check_plan_only_settings, search_seed, start_of_search
from rfcli.config.policy import check_policy
from rfcli.config.schema import MODEL_BASED_METHODS, ExperimentConfig
from rfcli.config.search import check_axes, grid_configs, random_configs
from rfcli.config.typed import normalize_shorthands, schema_errors, to_typed_config, without_keys
from rfcli.config.validate import run_config_errors
from rfcli.search.proposer import Prior, SearchSettings


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
    """The runs to train; a model-based search: its first proposals (the rest come as slots free)."""
    search: SearchSettings | None = None
    """A model-based search (tpe, gp, cmaes, qmc); None for grid and random plans."""
    prior: Prior = field(default_factory=Prior)
    """What the search's prior experiments recorded (`search.prior`)."""

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
    """YAML + overrides -> every configuration of the search space, each validated; every problem
    found in any run is raised at once."""
    source = str(path)
    try:
        raw = load_raw_config(path, overrides)
        search = raw.get("search") or {}
        method = search.get("method", "grid") if isinstance(search, dict) else "grid"
        space = {key: value for key, value in raw.items() if key != "search"}
        check_axes(space, method)
        settings, prior, edges = None, Prior(), []
        if method in MODEL_BASED_METHODS:
            start = start_of_search(raw)
            settings, prior, concrete, edges = start.settings, start.prior, start.configs, start.edges
        elif method == "random":
            num_samples = search.get("num_samples")
            if not isinstance(num_samples, int) or num_samples < 1:
                raise ConfigError(
                    "random search needs num_samples: a positive integer", key="search.num_samples"
                )
            check_plan_only_settings(search, method)
            concrete = random_configs(space, num_samples, seed=search_seed(raw))
        else:
            if isinstance(search, dict) and search.get("num_samples") is not None:
                raise ConfigError(
                    "num_samples is for random search; grid search runs every combination "
                    "(set search.method: random to draw num_samples of them)",
                    key="search.num_samples",
                )
            if isinstance(search, dict):
                check_plan_only_settings(search, method)
            concrete = grid_configs(space)
        runs, errors = [], []
        for index, values in enumerate(concrete, start=1):
            values["search"] = search
            try:
                runs.append(PlannedRun(id=index, config=build_run_config(values), raw=values))
            except ConfigError as error:
                errors.append(error)
        for values in edges:  # what a later proposal could give: refused now, not mid-sweep
            try:
                build_run_config(values)
            except ConfigError as error:
                errors.append(error)
        raise_all(errors)
        check_policy(raw.get("policy"), runs[0].config.policy, {run.id: run.flat() for run in runs})
        return RunPlan(source=source, runs=runs, search=settings, prior=prior)
    except ConfigError as error:
        raise error.located(source) from None


def build_run_config(raw: dict[str, Any]) -> ExperimentConfig:
    """One concrete config -> typed, checked against the schema, TRL, PEFT and the named functions.
    The values the schema rejects are set aside so that the rest is checked too: every problem is
    raised at once."""
    rejected = list(schema_errors(normalize_shorthands(raw)))
    rest = without_keys(raw, [error.key for error in rejected])
    if rest is None:
        raise_all(rejected)
    assert rest is not None
    try:
        config = to_typed_config(rest)
    except ConfigError as error:
        raise_all([*rejected, error])
        raise
    raise_all([*rejected, *run_config_errors(config)])
    return config


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """Nested mappings -> dotted keys; lists stay values (they are one setting)."""
    if isinstance(node, dict) and node:
        flat: dict[str, Any] = {}
        for key, value in node.items():
            flat.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return flat
    return {prefix: node}


def config_fingerprint(raw: dict[str, Any]) -> str:
    """The policy steers runs but is not part of what a run trains: changing it (say, leaving a
    dry run) keeps the experiment's plan the same."""
    trained = {key: value for key, value in raw.items() if key != "policy"}
    return hashlib.sha1(json.dumps(trained, sort_keys=True, default=str).encode()).hexdigest()[:8]
