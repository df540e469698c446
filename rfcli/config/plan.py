"""Compile an experiment file into a run plan: one fully resolved, validated config per run."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rfcli.config.errors import ConfigError, did_you_mean, each_problem, raise_all
from rfcli.config.hardware import hardware_notes, shared_precision_errors
from rfcli.config.loader import load_raw_config
from rfcli.config.model_search import check_plan_only_settings, search_seed, start_of_search
from rfcli.config.policy import check_policy
from rfcli.config.schema import MODEL_BASED_METHODS, SEARCH_METHODS, ExperimentConfig
from rfcli.config.search import COUNT_CAP, check_axes, count_grid, grid_configs, random_configs
from rfcli.config.typed import normalize_shorthands, schema_errors, to_typed_config, type_error, without_keys
from rfcli.config.validate import run_config_errors
from rfcli.gpus import machine_gpus
from rfcli.search.proposer import Prior, SearchSettings
from rfcli.store.experiments import experiment_folder


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
    notes: tuple[str, ...] = ()
    """Settings that work, but differently on this machine: `rf plan` and `rf run` print each once."""
    stored: bool = False
    """Read back from its experiment's store (`rf run -e NAME`), not compiled from a file: it is the
    experiment's plan by construction (retried runs included, whose configs changed in place)."""

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
        search = search_section(raw.get("search"))
        method = search.get("method", "grid")
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
            if num_samples > MAX_RUNS:
                raise ConfigError(
                    f"asks for {num_samples:,} runs; a plan holds at most {MAX_RUNS:,}",
                    key="search.num_samples",
                )
            check_plan_only_settings(search, method)
            concrete = random_configs(space, num_samples, seed=search_seed(raw))
        else:
            if search.get("num_samples") is not None:
                raise ConfigError(
                    "num_samples is for random search; grid search runs every combination "
                    "(set search.method: random to draw num_samples of them)",
                    key="search.num_samples",
                )
            check_plan_only_settings(search, method)
            check_plan_size(count_grid(space))
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
        check_one_experiment(runs)
        gpus = machine_gpus()
        raise_all(shared_precision_errors(runs, gpus))
        check_policy(raw.get("policy"), runs[0].config.policy, {run.id: run.flat() for run in runs})
        notes = dict.fromkeys(note for run in runs for note in hardware_notes(run.config, gpus))
        return RunPlan(source=source, runs=runs, search=settings, prior=prior, notes=tuple(notes))
    except ConfigError as error:
        raise error.located(source) from None


MAX_RUNS = 1_000
"""Runs one plan may hold: each is validated with TRL's config class when the plan compiles (tens
of milliseconds), stored, and shown in the live table."""


def check_plan_size(count: int) -> None:
    """Refuse a grid bigger than `MAX_RUNS` before making any of its configs (10 axes of 10 values
    are 10**10 runs from a file of a few lines)."""
    if count > MAX_RUNS:
        said = f"more than {COUNT_CAP:,}" if count > COUNT_CAP else f"{count:,}"
        raise ConfigError(
            f"the search space gives {said} runs (each grid axis multiplies them); a plan holds at most "
            f"{MAX_RUNS:,}: narrow the grid, or draw some of it with search.method: random and num_samples"
        )


EXPERIMENT_SETTINGS = ("name", "experiments_dir", "tracking_uri")
"""Where a plan's runs are kept and tracked: one experiment, so the same in every run."""


def check_one_experiment(runs: list[PlannedRun]) -> None:
    """Every run of a plan goes into one experiment, under a name that `rf run` can make a folder
    of: what `rf plan` shows, `rf run` then takes. A search axis over the experiment's own settings
    (a whole-config `grid` whose options name different experiments) would spread them."""
    for setting in EXPERIMENT_SETTINGS:
        values = list(dict.fromkeys(getattr(run.config, setting) for run in runs))
        if len(values) > 1:
            raise ConfigError(
                f"every run of a plan belongs to one experiment, but runs give {len(values)} values "
                f"({', '.join(map(str, values))}); give each option the same {setting}, or make a file "
                "for each experiment",
                key=setting,
            )
    first = runs[0].config
    experiment_folder(Path(first.experiments_dir), first.name)


def count_runs(raw: dict[str, Any]) -> int | None:
    """How many runs a file's plan has, counted in milliseconds without making it: the grid's size,
    or the samples drawn; None when the file cannot say (`compile_plan` then says why)."""
    search = raw.get("search") or {}
    if not isinstance(search, dict):
        return None
    if search.get("method", "grid") != "grid":
        samples = search.get("num_samples")
        return samples if isinstance(samples, int) and samples > 0 else None
    return count_grid({key: value for key, value in raw.items() if key != "search"})


def search_section(search: Any) -> dict[str, Any]:
    """The `search:` section, read before the plan is expanded (it says how): a mapping naming a
    known method, so that a typo in the method is what gets blamed, not what it makes of the rest."""
    if search is None:
        return {}
    if not isinstance(search, dict):
        raise type_error("search", search) or ConfigError("expected a mapping of settings", key="search")
    method = search.get("method", "grid")
    if method not in SEARCH_METHODS:
        raise ConfigError(
            f"expected one of {', '.join(SEARCH_METHODS)}, got {method!r}"
            f"{did_you_mean(str(method), SEARCH_METHODS)}",
            key="search.method",
        )
    return search


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
        raise_all([*rejected, *without_follow_ons(error, rejected)])
        raise
    raise_all([*rejected, *run_config_errors(config)])
    return config


def without_follow_ons(error: ConfigError, rejected: list[ConfigError]) -> list[ConfigError]:
    """`error`'s problems, less those inside a setting already rejected (a `data.train: 5` set
    aside leaves `data.train.source` missing: saying so too would blame the wrong thing)."""
    prefixes = tuple(f"{bad.key}." for bad in rejected if bad.key)
    return [part for part in each_problem(error) if not (part.key and part.key.startswith(prefixes))]


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
