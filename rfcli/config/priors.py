"""Prior experiments of a model-based search (`search.prior: [EXPERIMENT, ...]`): what their runs
recorded, read when the plan is compiled, so a bad name is refused before anything is written.

Each prior experiment must train with the same trainer. Its runs whose settings lie in this
search's space (a value of every axis; other settings, such as the number of steps, may differ)
are the sampler's first observations, at the chunk counts they recorded; a warm clone (it did not
start from scratch) and a deleted run are left out. Its best run, the one with the best value at
the deepest chunk count any of them recorded, is proposed first. The experiment keeps this reading
in its own store when it begins: what the priors record later does not change its proposals.
"""

from __future__ import annotations

import math
import sqlite3
from pathlib import Path
from typing import Any

from rfcli.config.errors import ConfigError, join_key
from rfcli.errors import DamagedFileError, NotFoundError
from rfcli.search.proposer import Observation, Prior, PriorBest, SearchSettings, fingerprint, observed_status
from rfcli.search.space import config_from_params, params_of
from rfcli.store.database import ExperimentStore
from rfcli.store.experiments import find_experiment
from rfcli.store.layout import ExperimentLayout


def read_prior(settings: SearchSettings, raw: dict[str, Any]) -> Prior:
    """The observations and best runs of the experiments `search.prior` names (module doc)."""
    names: list[str] = settings.section.get("prior") or []
    observations: list[Observation] = []
    best: list[PriorBest] = []
    for index, name in enumerate(names):
        key = join_key("search.prior", index)
        if name == raw.get("name"):
            raise ConfigError("names this experiment itself; name experiments that ran before it", key=key)
        try:
            folder = find_experiment(name, search_dir=Path(str(raw.get("experiments_dir", "rf-experiments"))))
        except NotFoundError as missing:
            raise ConfigError(str(missing), key=key) from None
        found = experiment_observations(folder, name, settings, str(raw.get("trainer", "sft")), key)
        observations += found
        winner = best_observation(found, settings.mode)
        if winner is not None:
            chunk, value = winner[1]
            detail = f"best of prior experiment {name}: {settings.metric} {value:.4g} at chunk {chunk}"
            seen = {fingerprint(config_from_params(settings.space, b.params)) for b in best}
            if fingerprint(config_from_params(settings.space, winner[0].params)) not in seen:
                best.append(PriorBest(winner[0].params, detail))
    return Prior(observations, best)


def experiment_observations(
    folder: Path, name: str, settings: SearchSettings, trainer: str, key: str
) -> list[Observation]:
    """An observation of each run of the experiment in `folder` that lies in the space."""
    try:
        with ExperimentStore(ExperimentLayout(folder).state_db, create=False) as store:
            runs = store.runs()
            values = store.chunk_values(settings.metric)
            judged_out = store.judged_out()
    except DamagedFileError as damaged:
        raise ConfigError(
            f"cannot read experiment '{name}' in {folder}: {damaged.problem}", key=key
        ) from None
    except (RuntimeError, sqlite3.DatabaseError) as error:  # a newer rf's store, a damaged page
        raise ConfigError(f"cannot read experiment '{name}' in {folder}: {error}", key=key) from None
    found = []
    for run in runs:
        if run.warm_start or run.state == "deleted":
            continue
        theirs = run.config.get("trainer", "sft")
        if theirs != trainer:
            raise ConfigError(
                f"experiment '{name}' trains with trainer {theirs}, this one with {trainer}; "
                "name experiments of the same trainer and search space",
                key=key,
            )
        params = params_of(settings.space, run.config)
        if params is not None:
            status = observed_status(run.state, run.id in judged_out)
            found.append(Observation(params, values.get(run.id, {}), status))
    if not found:
        raise ConfigError(
            f"no run of experiment '{name}' lies in this search space ({len(runs)} runs, each with a "
            "value outside an axis, or a setting an axis does not offer); name an experiment of the "
            "same space",
            key=key,
        )
    return found


def best_observation(found: list[Observation], mode: str) -> tuple[Observation, tuple[int, float]] | None:
    """The observation with the best value at the deepest chunk count any of them recorded a number at."""
    numbers = [
        (observation, chunk, value)
        for observation in found
        for chunk, value in observation.values.items()
        if value is not None and not math.isnan(value)
    ]
    if not numbers:
        return None
    deepest = max(chunk for _, chunk, _ in numbers)
    at_deepest = [(observation, value) for observation, chunk, value in numbers if chunk == deepest]
    sign = 1.0 if mode == "min" else -1.0
    observation, value = min(at_deepest, key=lambda pair: sign * pair[1])
    return observation, (deepest, value)
