"""The next configuration to try, from what the runs of the sweep have recorded so far.

In a chunked sweep no run completes before the others have had their turns, so a sampler that
learned only from completed runs would learn nothing until the end. Here it learns from every
run's value at each rung (a chunk count), aligned by rung. The rules, for proposal number k:

1. Priors first. The best configuration of each prior experiment (`search.prior`) is proposed
   before anything else, as it was, in the order the experiments are named.
2. One rung. The sampler sees the runs at one rung r: the deepest chunk count at which at least
   S runs have recorded the metric, where S = min(10, concurrent), at least 2. Every run that
   recorded a value at r is an observation with that value (NaN: as bad as the worst number); a
   run judged out below r (stopped by a policy, or failed) is one as bad as the worst value at r
   (ranked last, and in the range a GP models); a run still in the schedule below r is in flight
   (TPE and GP keep away from what is in flight); a run a person stopped or deleted below r, or
   that completed before r, tells nothing at r.
3. A space-filling start. While no rung has S values, proposals come from a scrambled Sobol
   sequence (Optuna's QMC sampler; its first point, taken before it knows the space, is a random
   draw), continuing where the last proposal left it. Method `qmc` stays on that sequence.
4. Then the method's sampler (Optuna's TPE, GP or CMA-ES), given the observations of rule 2.
5. New configurations only. A proposal that repeats one already proposed is asked again (up to
   20 times), then drawn at random (up to 100 times); if none is new, there is none (the space is
   spent).
6. Deterministic. Each proposal rebuilds an in-memory Optuna study from what is recorded (the
   earlier proposals' parameters and the samplers' own attributes, the values) and seeds the
   sampler with (seed, k): the same file, seed and recorded values give the same proposals.

Pure: reads recorded values, returns configurations; no torch (except inside Optuna's GP sampler),
no I/O. Optuna is imported only when a proposal is made.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from rfcli.search.space import Parameter, concrete, config_from_params, parameters
from rfcli.store.states import UNFINISHED, RunState

if TYPE_CHECKING:
    from optuna import Study, Trial
    from optuna.samplers import BaseSampler
    from optuna.storages import InMemoryStorage

SEARCH_META, PRIOR_META = "search", "search.prior"
"""Store meta keys: the search's settings, and what its prior experiments had recorded when it began."""
METHOD_NAMES = {"tpe": "TPE", "gp": "GP", "cmaes": "CMA-ES", "qmc": "QMC"}
MAX_START = 10
"""Rule 2: Optuna's TPE and GP draw at random below 10 observations; a smaller sweep starts sooner."""
SAME_AGAIN_TRIES, RANDOM_TRIES = 20, 100


@dataclass(frozen=True)
class SearchSettings:
    """A model-based search as the file gives it, kept in the experiment's store."""

    method: str
    space: dict[str, Any]
    """The file's settings with their axes (everything but `search` and `policy`)."""
    num_samples: int
    concurrent: int
    seed: int
    metric: str
    mode: str
    section: dict[str, Any] = field(default_factory=dict)
    """The `search` section as the file gives it: every proposal's config carries it."""
    budget: int | None = None
    """Chunk-units (chunks the runs trained themselves) the proposals may spend (`free_slots`)."""

    @property
    def start_size(self) -> int:
        """S of rule 2: the values at one rung the sampler waits for."""
        return max(2, min(MAX_START, self.concurrent))

    def to_json(self) -> str:
        return json.dumps(asdict(self))  # in file order: the order axes are sampled in

    @classmethod
    def from_json(cls, text: str) -> SearchSettings:
        return cls(**json.loads(text))

    def same_search(self, other: SearchSettings) -> bool:
        """The same space, method and seed: how many to try, and how many at once, may change."""
        return (self.method, self.space, self.seed) == (other.method, other.space, other.seed)


IN_SCHEDULE, JUDGED_OUT, LEFT, COMPLETED = "in schedule", "judged out", "left", "completed"
"""What became of an observed run (rule 2): training or waiting; stopped by a policy or failed;
stopped or deleted by a person; trained to its end."""


def observed_status(state: str, judged_out: bool) -> str:
    """What rule 2 makes of a run in `state` (`judged_out`: a policy stopped or replaced it)."""
    if state in UNFINISHED:
        return IN_SCHEDULE
    if state == RunState.COMPLETED:
        return COMPLETED
    return JUDGED_OUT if judged_out or state == RunState.FAILED else LEFT


@dataclass(frozen=True)
class Observation:
    """A configuration the sampler has seen, and what its run recorded."""

    params: dict[str, Any]
    values: Mapping[int, float | None]
    """The metric at each chunk count the run trained (NaN: not a number; None: not recorded)."""
    status: str
    trial_attrs: Mapping[str, Any] = field(default_factory=dict)
    """What the sampler kept on the trial when it proposed this configuration (CMA-ES's state)."""


@dataclass(frozen=True)
class PriorBest:
    """Rule 1: a prior experiment's best configuration and why it is first."""

    params: dict[str, Any]
    detail: str


@dataclass(frozen=True)
class Prior:
    """What the prior experiments had recorded when the search began (rule 1)."""

    observations: list[Observation] = field(default_factory=list)
    best: list[PriorBest] = field(default_factory=list)

    def to_json(self) -> str:
        observations = [
            {"params": o.params, "values": {str(k): v for k, v in o.values.items()}, "status": o.status}
            for o in self.observations
        ]
        best = [{"params": b.params, "detail": b.detail} for b in self.best]
        return json.dumps({"observations": observations, "best": best})

    @classmethod
    def from_json(cls, text: str | None) -> Prior:
        if not text:
            return cls()
        stored = json.loads(text)
        observations = [
            Observation(o["params"], {int(k): v for k, v in o["values"].items()}, o["status"])
            for o in stored["observations"]
        ]
        return cls(observations, [PriorBest(b["params"], b["detail"]) for b in stored["best"]])


@dataclass(frozen=True)
class Proposal:
    number: int
    params: dict[str, Any]
    config: dict[str, Any]
    """The space with every axis given its value: a run's config, less its `search` section."""
    detail: str
    """How it was proposed: 'TPE from 14 rung-1 values', 'QMC start, 3 of 8'."""
    trial_attrs: dict[str, Any] = field(default_factory=dict)
    study_attrs: dict[str, Any] = field(default_factory=dict)
    """The study's attributes after this proposal (where the QMC sequence stands)."""


def free_slots(
    active: int, proposed: int, concurrent: int, num_samples: int, trained: int = 0, budget: int | None = None
) -> int:
    """How many proposals to make now: up to `concurrent` runs in the schedule, `num_samples` in all,
    and with a `budget` of chunk-units, only while the chunks trained plus one for each run in the
    schedule (it trains one more at least) stay below it; those runs then finish as the policy lets
    them, so a sweep ends a little past its budget."""
    slots = max(0, min(concurrent - active, num_samples - proposed))
    return slots if budget is None else min(slots, max(0, budget - trained - active))


def fingerprint(config: Any) -> str:
    return json.dumps(config, sort_keys=True)


@dataclass(frozen=True)
class RungView:
    """Rule 2: the observations at one rung, as the sampler gets them."""

    rung: int | None
    """None before any rung has S values: the start (rule 3)."""
    values: dict[int, float]
    """Observation index -> its value at the rung (NaN, and judged-out runs below it: the worst)."""
    in_flight: list[int]
    recorded: int
    """How many runs recorded a value at the rung."""
    ranked_last: int
    """Judged-out runs below the rung, told as the worst value at it."""


def rung_view(observations: Sequence[Observation], settings: SearchSettings) -> RungView:
    """Rule 2: the deepest rung with at least S recorded values, and what each observation tells there."""
    counts: dict[int, int] = {}
    for observation in observations:
        for chunk, value in observation.values.items():
            if value is not None:
                counts[chunk] = counts.get(chunk, 0) + 1
    deep = [chunk for chunk, count in counts.items() if count >= settings.start_size]
    if not deep:
        return RungView(None, {}, [], max(counts.values(), default=0), 0)
    rung = max(deep)
    sign = 1.0 if settings.mode == "min" else -1.0
    recorded = {
        index: observation.values[rung]
        for index, observation in enumerate(observations)
        if observation.values.get(rung) is not None
    }
    numbers = [sign * value for value in recorded.values() if value is not None and not math.isnan(value)]
    worst = sign * max(numbers) if numbers else 0.0  # ties with the worst: ranked last, in range for GP
    values = {
        index: worst if value is None or math.isnan(value) else value for index, value in recorded.items()
    }
    in_flight, ranked_last = [], 0
    for index, observation in enumerate(observations):
        if index in values:
            continue
        if observation.status == JUDGED_OUT:
            values[index] = worst
            ranked_last += 1
        elif observation.status == IN_SCHEDULE:
            in_flight.append(index)
    return RungView(rung, values, in_flight, len(recorded), ranked_last)


def next_proposal(
    settings: SearchSettings,
    prior: Prior,
    earlier: Sequence[Observation],
    study_attrs: Mapping[str, Any] | None = None,
) -> Proposal | None:
    """The proposal after `earlier` (every proposal of this search so far, in order, with what its
    run recorded), by the rules of the module doc; `study_attrs`: the latest proposal's. None when
    the space has no new configuration left."""
    number = len(earlier) + 1
    if number <= len(prior.best):
        best = prior.best[number - 1]
        return Proposal(number, best.params, config_from_params(settings.space, best.params), best.detail)
    taken = {fingerprint(config_from_params(settings.space, observation.params)) for observation in earlier}
    observations = [*prior.observations, *earlier]
    view = rung_view(observations, settings)
    start = settings.method == "qmc" or view.rung is None
    with quiet_optuna():
        axes = parameters(settings.space)
        study, storage = rebuilt_study(settings, observations, view, study_attrs or {}, axes)
        seed = proposal_seed(settings.seed, number)
        study.sampler = qmc_sampler(settings, seed) if start else model_sampler(settings.method, seed)
        for attempt in range(SAME_AGAIN_TRIES + RANDOM_TRIES):
            if attempt == SAME_AGAIN_TRIES:
                from optuna.samplers import RandomSampler

                study.sampler = RandomSampler(seed=seed)
            trial, params, config = ask(study, settings.space)
            if fingerprint(config) not in taken:
                detail = describe(settings, view, number - len(prior.best), start)
                if attempt >= SAME_AGAIN_TRIES:
                    detail = f"random draw: {detail} repeated a configuration already proposed"
                frozen = study.get_trials(deepcopy=False)[-1]
                attrs = storage.get_study_system_attrs(storage.get_study_id_from_name(study.study_name))
                return Proposal(number, params, config, detail, dict(frozen.system_attrs), dict(attrs))
            from optuna.trial import TrialState

            study.tell(trial, state=TrialState.FAIL)
    return None


def start_proposals(settings: SearchSettings, prior: Prior) -> list[Proposal]:
    """The proposals a new experiment begins with: one per slot, none of them trained yet."""
    proposals: list[Proposal] = []
    earlier: list[Observation] = []
    for _ in range(min(settings.concurrent, settings.num_samples)):
        proposal = next_proposal(settings, prior, earlier, proposals[-1].study_attrs if proposals else None)
        if proposal is None:
            break
        proposals.append(proposal)
        earlier.append(Observation(proposal.params, {}, IN_SCHEDULE, proposal.trial_attrs))
    return proposals


def describe(settings: SearchSettings, view: RungView, k: int, start: bool) -> str:
    name = METHOD_NAMES[settings.method]
    if settings.method == "qmc":
        return f"QMC, {k} of {settings.num_samples}"
    if start:
        if k <= settings.concurrent:
            return f"QMC start, {k} of {settings.concurrent}"
        so_far = f"{view.recorded} so far" if view.recorded else f"no run has recorded {settings.metric} yet"
        return f"QMC start, {k}: {name} takes over at {settings.start_size} values at one rung ({so_far})"
    detail = f"{name} from {view.recorded} rung-{view.rung} values"
    if view.ranked_last:
        detail += f", {view.ranked_last} judged out before rung {view.rung} ranked last"
    if view.in_flight:
        detail += f", {len(view.in_flight)} in flight"
    return detail


def ask(study: Study, space: dict[str, Any]) -> tuple[Trial, dict[str, Any], dict[str, Any]]:
    """A new trial of the study: its parameters (as kept) and the config they give."""
    trial = study.ask()
    params: dict[str, Any] = {}
    config = concrete(space, lambda parameter: suggest(trial, parameter, params))
    return trial, params, config


def suggest(trial: Trial, parameter: Parameter, params: dict[str, Any]) -> Any:
    """The trial's value for `parameter`, kept as the config will hold it."""
    value: Any
    if parameter.categorical:
        value = trial.suggest_categorical(parameter.name, list(range(parameter.options)))
    elif parameter.marker == "randint":
        value = trial.suggest_int(parameter.name, int(parameter.low), int(parameter.high))
    else:
        log = parameter.marker == "loguniform"
        value = trial.suggest_float(parameter.name, parameter.low, parameter.high, log=log)
    params[parameter.name] = parameter.kept(value)
    return params[parameter.name]


def rebuilt_study(
    settings: SearchSettings,
    observations: Sequence[Observation],
    view: RungView,
    study_attrs: Mapping[str, Any],
    parameters: Sequence[Parameter],
) -> tuple[Study, InMemoryStorage]:
    """Rule 6: a fresh in-memory study holding every observation as the rung view tells it, and its
    storage (where the study's own attributes are read back)."""
    import optuna
    from optuna.trial import TrialState, create_trial

    storage = optuna.storages.InMemoryStorage()
    minimize = settings.mode == "min"
    direction = optuna.study.StudyDirection.MINIMIZE if minimize else optuna.study.StudyDirection.MAXIMIZE
    study = optuna.create_study(storage=storage, direction=direction)
    study_id = storage.get_study_id_from_name(study.study_name)
    for key, value in study_attrs.items():
        storage.set_study_system_attr(study_id, key, value)
    distributions = {parameter.name: parameter.distribution() for parameter in parameters}
    trials = []
    for index, observation in enumerate(observations):
        known = {name: distributions[name] for name in observation.params}
        if index in view.values:
            state, value = TrialState.COMPLETE, view.values[index]
        elif index in view.in_flight or view.rung is None:
            state, value = TrialState.RUNNING, None
        else:
            state, value = TrialState.FAIL, None  # tells nothing at this rung
        trials.append(
            create_trial(
                state=state,
                value=value,
                params=observation.params,
                distributions=known,
                system_attrs=dict(observation.trial_attrs),
            )
        )
    study.add_trials(trials)
    return study, storage


def proposal_seed(seed: int, number: int) -> int:
    """Rule 6: each proposal its own seed, so two asked on the same values still differ."""
    return (seed * 1_000_003 + number) % 2**32


def qmc_sampler(settings: SearchSettings, seed: int) -> BaseSampler:
    """Rule 3: one scrambled Sobol sequence per search seed; what it cannot cover (its first point,
    the axes of options not always taken) is drawn with this proposal's seed."""
    from optuna.samplers import QMCSampler, RandomSampler

    return QMCSampler(
        seed=settings.seed,
        scramble=True,
        independent_sampler=RandomSampler(seed=seed),
        warn_independent_sampling=False,
    )


def model_sampler(method: str, seed: int) -> BaseSampler:
    """Rule 4, with the start already made (rule 3): no startup draws of their own."""
    from optuna.samplers import CmaEsSampler, GPSampler, TPESampler

    if method == "tpe":
        return TPESampler(seed=seed, n_startup_trials=0, multivariate=True, group=True, constant_liar=True)
    if method == "gp":
        return GPSampler(seed=seed, n_startup_trials=0, warn_independent_sampling=False)
    if method == "cmaes":
        return CmaEsSampler(seed=seed, n_startup_trials=0, warn_independent_sampling=False)
    raise ValueError(f"unknown search method '{method}'; expected one of {', '.join(METHOD_NAMES)}")


@contextmanager
def quiet_optuna() -> Iterator[None]:
    """Optuna logs each trial and warns about experimental options; rf says what it proposed itself."""
    import optuna

    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        optuna.logging.set_verbosity(verbosity)
