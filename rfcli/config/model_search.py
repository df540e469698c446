"""The plan of a model-based search (tpe, gp, cmaes, qmc): its settings checked, its space's edges.

Such a plan has no fixed list of runs: it starts with one proposal per slot (`concurrent`), and
proposes the rest while the sweep runs (`engine/refill.py`). So besides those first proposals, the
plan compiler checks the configs a later proposal could give at the edges of the space: each axis
at its low and high end, each option of a categorical, the others as the first proposal has them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, TypeGuard

from rfcli.config.errors import ConfigError
from rfcli.config.priors import read_prior
from rfcli.config.schema import MODEL_BASED_METHODS, POLICY_MODES
from rfcli.search.proposer import METHOD_NAMES, Prior, Proposal, SearchSettings, fingerprint, start_proposals
from rfcli.search.space import config_from_params, parameters, space_size

DEFAULT_CONCURRENT = 8
MAX_CONCURRENT = 1000
"""Each slot is a run that a worker may hold in memory: a plan asks for at most this many at once."""
ONLY_MODEL_BASED = ("concurrent", "metric", "mode", "prior", "budget")
DEFAULT_SEED = 42  # the experiment's `seed` default (schema.ExperimentConfig)


@dataclass(frozen=True)
class SearchStart:
    """What the plan of a model-based search holds: its settings, what its priors recorded, the
    configs of its first proposals, and those at the space's edges (checked, not trained)."""

    settings: SearchSettings
    prior: Prior
    configs: list[dict[str, Any]]
    edges: list[dict[str, Any]]


def start_of_search(raw: dict[str, Any]) -> SearchStart:
    settings = search_settings(raw)
    prior = read_prior(settings, raw)
    start = start_proposals(settings, prior)
    policy = raw.get("policy")
    configs = [proposal_config(settings, proposal, policy) for proposal in start]
    return SearchStart(settings, prior, configs, edge_configs(settings, start, policy))


def search_seed(raw: dict[str, Any]) -> int:
    """`search.seed`, or the experiment's `seed`: what random draws and proposals are seeded with."""
    section = mapping(raw.get("search"))
    given = section.get("seed") if section.get("seed") is not None else raw.get("seed", DEFAULT_SEED)
    if not isinstance(given, int) or isinstance(given, bool):
        key = "search.seed" if section.get("seed") is not None else "seed"
        raise ConfigError(f"expected an integer, got {given!r}", key=key)
    return given


def search_space(raw: dict[str, Any]) -> dict[str, Any]:
    """What a search varies: the file less its `search` and `policy` sections (a policy steers the
    sweep; changing it keeps the search)."""
    return {key: value for key, value in raw.items() if key not in ("search", "policy")}


def check_plan_only_settings(section: dict[str, Any], method: str) -> None:
    """Settings of a model-based search given to grid or random search do nothing: say so."""
    for key in ONLY_MODEL_BASED:
        if section.get(key) not in (None, []):
            raise ConfigError(
                f"{key} is for the methods that propose while the sweep runs "
                f"({', '.join(MODEL_BASED_METHODS)}); {method} search plans every run up front",
                key=f"search.{key}",
            )
    if method == "grid" and section.get("seed") is not None:
        raise ConfigError(
            "grid search draws nothing; leave seed out, or set search.method", key="search.seed"
        )


def search_settings(raw: dict[str, Any]) -> SearchSettings:
    """The search section of a model-based search, checked against its space."""
    section: dict[str, Any] = raw["search"]
    method = str(section["method"])
    num_samples = section.get("num_samples")
    if not _positive_int(num_samples):
        raise ConfigError(
            f"{method} search needs num_samples: how many configurations to try in all (a positive "
            f"integer), got {num_samples!r}",
            key="search.num_samples",
        )
    concurrent = section.get("concurrent")
    if concurrent is None:
        concurrent = min(DEFAULT_CONCURRENT, num_samples)
    if not _positive_int(concurrent) or concurrent > MAX_CONCURRENT:
        raise ConfigError(
            f"expected how many runs train or wait at once: an integer from 1 to {MAX_CONCURRENT}, "
            f"got {concurrent!r}",
            key="search.concurrent",
        )
    seed = search_seed(raw)
    budget = section.get("budget")
    if budget is not None and not _positive_int(budget):
        raise ConfigError(
            f"expected the chunk-units to spend (a positive integer), got {budget!r}", key="search.budget"
        )
    policy = mapping(raw.get("policy"))
    steering = policy.get("name", "none") != "none"
    metric = section.get("metric") or (policy.get("metric", "eval_loss") if steering else "eval_loss")
    mode = section.get("mode") or (policy.get("mode", "min") if steering else "min")
    if mode not in POLICY_MODES:
        raise ConfigError(f"expected min or max, got {mode!r}", key="search.mode")
    prior = section.get("prior") or []
    if not isinstance(prior, list) or not all(isinstance(name, str) for name in prior):
        raise ConfigError(f"expected a list of experiment names, got {prior!r}", key="search.prior")
    space = search_space(raw)
    check_space(space, method, num_samples)
    return SearchSettings(
        method=method,
        space=space,
        num_samples=num_samples,
        concurrent=min(concurrent, num_samples),
        budget=budget,
        seed=seed,
        metric=str(metric),
        mode=str(mode),
        section=section,
    )


def check_space(space: dict[str, Any], method: str, num_samples: int) -> None:
    """A space with something to search, in markers the method can use, holding num_samples configs."""
    axes = parameters(space)
    if not axes:
        raise ConfigError(
            f"{method} search needs at least one search axis ({{loguniform: [low, high]}}, "
            "{uniform: ...}, {randint: ...}, {choice: [...]} or {grid: [...]}); this file has fixed "
            "values only",
            key="search.method",
        )
    if method == "cmaes":
        for axis in axes:
            if axis.categorical:
                raise ConfigError(
                    f"'{axis.marker}' is a categorical axis, which CMA-ES cannot search; use a "
                    "uniform, loguniform or randint range, or search.method: tpe or gp",
                    key=axis.name,
                )
    size = space_size(space)
    if size < num_samples:
        raise ConfigError(
            f"asked for {num_samples} distinct configurations but the search space holds only "
            f"{int(size) if math.isfinite(size) else size}; lower num_samples or widen the space",
            key="search.num_samples",
        )


def proposal_config(settings: SearchSettings, proposal: Proposal, policy: Any) -> dict[str, Any]:
    """A proposal as a run's config: the space's values, the policy that steers it (if any), the search
    section."""
    return run_config(settings, proposal.config, policy)


def run_config(settings: SearchSettings, config: dict[str, Any], policy: Any) -> dict[str, Any]:
    steering = {} if policy is None else {"policy": policy}
    return {**config, **steering, "search": settings.section}


def edge_configs(settings: SearchSettings, start: list[Proposal], policy: Any) -> list[dict[str, Any]]:
    """The configs at the space's edges (module doc) that the start proposals do not already hold."""
    base = start[0].params if start else {}
    seen = {fingerprint(proposal.config) for proposal in start}
    configs = []
    for axis in parameters(settings.space):
        ends = range(axis.options) if axis.categorical else (axis.kept(axis.low), axis.kept(axis.high))
        for value in ends:
            config = config_from_params(settings.space, {**base, axis.name: value})
            if fingerprint(config) not in seen:
                seen.add(fingerprint(config))
                configs.append(run_config(settings, config, policy))
    return configs


def _positive_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def mapping(value: Any) -> dict[str, Any]:
    """A section as a mapping; one of another shape is the typed config's to report."""
    return value if isinstance(value, dict) else {}


def describe_search(settings: SearchSettings, shown: int) -> str:
    """'search: TPE on eval_loss (min) tries 24 configurations, 8 at a time ...' for `rf plan`."""
    prior = settings.section.get("prior") or []
    return (
        f"search: {METHOD_NAMES[settings.method]} on {settings.metric} ({settings.mode}) tries "
        f"{settings.num_samples} configurations, {settings.concurrent} at a time: the first {shown} are "
        "above; each later one is proposed as a slot frees, from what the runs record at each chunk"
        + (f"; it starts from experiments {', '.join(prior)}" if prior else "")
    )
