"""An experiment's folder: its state store, its MLflow store, and the runs of its plan."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rfcli.config.errors import ConfigError
from rfcli.config.loader import load_raw_config
from rfcli.config.plan import PlannedRun, RunPlan, build_run_config, count_runs
from rfcli.config.policy import POLICY_META, policy_from_json
from rfcli.errors import UserError
from rfcli.paths import folder_problem
from rfcli.search.proposer import PRIOR_META, SEARCH_META, SearchSettings
from rfcli.store.database import ExperimentStore
from rfcli.store.experiments import DEFAULT_EXPERIMENTS_DIR, experiment_folder, store_expected
from rfcli.store.layout import ExperimentLayout
from rfcli.store.states import UNFINISHED
from rfcli.tracking.mlflow_tracker import (
    MlflowTracker,
    check_tracking_store,
    remember_tracking_uri,
    tracking_uri_for,
)

RUN_NAME_LIMIT = 80


@dataclass
class Experiment:
    folder: Path
    store: ExperimentStore
    tracker: MlflowTracker

    def has_work(self) -> bool:
        """A run left to train, a command waiting (a resume, a clone) that may give one, or a
        proposal left for a model-based search to make."""
        from rfcli.engine.refill import Refill

        unfinished = any(run.state in UNFINISHED for run in self.store.runs())
        return unfinished or bool(self.store.pending_commands()) or Refill(self.store).proposals_left()


def named_folder(path: Path, overrides: list[str]) -> Path | None:
    """The experiment folder a file names, read in milliseconds, before its plan is compiled
    (seconds: TRL's config classes check every run); None when the file cannot say, and
    `compile_plan` reports why."""
    try:
        raw = load_raw_config(path, overrides)
        name, experiments_dir = raw.get("name"), raw.get("experiments_dir", str(DEFAULT_EXPERIMENTS_DIR))
        if isinstance(name, str) and isinstance(experiments_dir, str):
            return experiment_folder(Path(experiments_dir), name)
    except ConfigError:
        pass
    return None


def planned_runs(path: Path, overrides: list[str]) -> int | None:
    """How many runs the file's plan has, counted in milliseconds like `named_folder` reads."""
    try:
        return count_runs(load_raw_config(path, overrides))
    except ConfigError:
        return None


def plan_folder(run_plan: RunPlan) -> Path:
    """The folder of the plan's experiment (which may not exist yet)."""
    first = run_plan.runs[0].config
    try:
        return experiment_folder(Path(first.experiments_dir), first.name)
    except ConfigError as error:
        raise error.located(run_plan.source) from None


def make_folder(run_plan: RunPlan) -> Path:
    """Create the plan's experiment folder (once its inputs are checked); a bad place is the user's error."""
    folder = plan_folder(run_plan)
    problem = folder_problem(folder)
    try:
        if problem is None:
            folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:  # a full disk, a file system that refuses the name
        problem = error.strerror
    if problem is not None:  # experiments_dir is a file, a link to nothing, or a folder rf may not write to
        raise ConfigError(
            f"cannot make the experiment folder {folder}: {problem}",
            source=run_plan.source,
            key="experiments_dir",
        )
    return folder


def open_experiment(run_plan: RunPlan) -> Experiment:
    """Create the experiment's folder and runs, or reopen it when the same plan ran before. A store
    is made only in a folder that never had one: where the experiment left checkpoints or MLflow's
    store, its state store must be there, and whole."""
    first = run_plan.runs[0].config
    folder = plan_folder(run_plan)
    folder.mkdir(parents=True, exist_ok=True)
    store = ExperimentStore(ExperimentLayout(folder).state_db, create=not store_expected(folder))
    existing = {run.id: run for run in store.runs()}
    try:
        check_tracking_store(folder, [run.id for run in existing.values() if run.mlflow_run_id])
        if run_plan.stored:
            pass  # read back from this store: the experiment's own plan (and search) by construction
        elif run_plan.search is not None or store.get_meta(SEARCH_META) is not None:
            keep_search(store, run_plan, folder)
        elif existing:
            check_same_plan(run_plan, existing, folder)
    except UserError:
        store.close()
        raise
    if first.tracking_uri:
        remember_tracking_uri(folder, first.tracking_uri)
    if not existing:
        if run_plan.search is None:  # a model-based search's runs are its proposals, made as slots free
            varying = run_plan.varying_keys()
            for run in run_plan.runs:
                store.add_run(
                    run.id, run.raw, run.fingerprint, name=run_name(run.id, run.flat(), varying), cause="plan"
                )
        store.set_meta("source", run_plan.source)
    # The policy of this `rf run` steers from now on: it is not part of the plan's identity.
    store.set_meta(POLICY_META, json.dumps(dataclasses.asdict(first.policy)))
    tracker = MlflowTracker(tracking_uri_for(folder), first.name)
    return Experiment(folder, store, tracker)


def stored_plan(folder: Path) -> RunPlan:
    """The plan experiment `folder` was started with, read from its store: every run it planned
    (clones are added by the store itself), each checked again as a plan's run is (a reward module
    may be gone since), under the policy its last `rf run` steered with."""
    with ExperimentStore(ExperimentLayout(folder).state_db, create=False) as store:
        planned = [run for run in store.runs() if run.parent_id is None]
        policy = policy_from_json(store.get_meta(POLICY_META))
        source = store.get_meta("source")
    label = f"experiment '{folder.name}'" + (f" (planned from {source})" if source else "")
    if not planned:
        raise ConfigError("has no runs to continue; start it with `rf run CONFIG`", source=label)
    runs = []
    for run in planned:
        try:
            config = build_run_config(run.config)
        except ConfigError as error:
            raise error.located(label) from None
        # The folder it was found in, wherever `rf run` is started from now.
        config = dataclasses.replace(config, policy=policy, experiments_dir=str(folder.parent))
        runs.append(PlannedRun(run.id, config, run.config))
    return RunPlan(source=label, runs=runs, stored=True)


def keep_search(store: ExperimentStore, run_plan: RunPlan, folder: Path) -> None:
    """A model-based search keeps its settings in the store, and what its prior experiments had
    recorded when it began; the same file continues it (how many to try, and how many at once, may
    change), any other plan is refused."""
    stored = store.get_meta(SEARCH_META)
    search = run_plan.search
    if search is None or (stored is None and store.runs()):
        started = "a model-based search" if stored else "a plan of its own"
        raise different_plan(run_plan, folder, f"it was started as {started}")
    if stored is not None and not SearchSettings.from_json(stored).same_search(search):
        raise different_plan(run_plan, folder, "its search space, method or seed differ")
    if stored is None:
        store.set_meta(PRIOR_META, run_plan.prior.to_json())  # before the search: a kill between rewrites it
    store.set_meta(SEARCH_META, search.to_json())


def different_plan(run_plan: RunPlan, folder: Path, why: str) -> ConfigError:
    return ConfigError(
        f"experiment '{run_plan.name}' in {folder} was started with a different plan ({why}); give this "
        "sweep another `name` (e.g. name=my-sweep-2) or remove that folder",
        source=run_plan.source,
        key="name",
    )


def check_same_plan(run_plan: RunPlan, existing: dict[int, Any], folder: Path) -> None:
    """The file must still give the runs it gave: the same settings, none added, none dropped
    (clones made since are the experiment's own)."""
    planned = {run.id for run in existing.values() if run.parent_id is None}
    dropped = sorted(planned - {run.id for run in run_plan.runs})
    if dropped:
        raise ConfigError(
            f"experiment '{run_plan.name}' in {folder} was started with a different plan (it has run "
            f"{dropped[0]}, which this file no longer gives); give this sweep another `name` "
            "(e.g. name=my-sweep-2) or remove that folder",
            source=run_plan.source,
            key="name",
        )
    for run in run_plan.runs:
        stored = existing.get(run.id)
        if stored is None or stored.fingerprint != run.fingerprint:
            raise ConfigError(
                f"experiment '{run_plan.name}' in {folder} was started with a different plan (run {run.id} "
                "differs); give this sweep another `name` (e.g. name=my-sweep-2) or remove that folder",
                source=run_plan.source,
                key="name",
            )


def run_name(run_id: int, flat: dict[str, Any], varying: list[str]) -> str:
    """'3 learning_rate=0.0001 r=32': the run id and what sets it apart, for tables and MLflow."""
    parts = [str(run_id)]
    for key in varying:
        value = flat.get(key)
        text = (
            f"{value:g}"
            if isinstance(value, float)
            else json.dumps(value)
            if isinstance(value, list)
            else value
        )
        parts.append(f"{key.rsplit('.', 1)[-1]}={text}")
    name = " ".join(parts)
    return name if len(name) <= RUN_NAME_LIMIT else name[: RUN_NAME_LIMIT - 1] + "…"
