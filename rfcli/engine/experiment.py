"""An experiment's folder: its state store, its MLflow store, and the runs of its plan."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rfcli.config.errors import ConfigError
from rfcli.config.loader import load_raw_config
from rfcli.config.plan import RunPlan
from rfcli.config.policy import POLICY_META
from rfcli.search.proposer import PRIOR_META, SEARCH_META, SearchSettings
from rfcli.store.database import ExperimentStore
from rfcli.store.experiments import DEFAULT_EXPERIMENTS_DIR, experiment_folder
from rfcli.store.layout import ExperimentLayout
from rfcli.store.states import UNFINISHED
from rfcli.tracking.mlflow_tracker import MlflowTracker, remember_tracking_uri, tracking_uri_for

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
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:  # experiments_dir is a file, or a folder rf may not write to
        raise ConfigError(
            f"cannot make the experiment folder {folder}: {error.strerror}",
            source=run_plan.source,
            key="experiments_dir",
        ) from None
    return folder


def open_experiment(run_plan: RunPlan) -> Experiment:
    """Create the experiment's folder and runs, or reopen it when the same plan ran before."""
    first = run_plan.runs[0].config
    folder = plan_folder(run_plan)
    folder.mkdir(parents=True, exist_ok=True)
    if first.tracking_uri:
        remember_tracking_uri(folder, first.tracking_uri)
    store = ExperimentStore(ExperimentLayout(folder).state_db)
    existing = {run.id: run for run in store.runs()}
    if run_plan.search is not None or store.get_meta(SEARCH_META) is not None:
        keep_search(store, run_plan, folder)
    elif existing:
        check_same_plan(run_plan, existing, folder)
    else:
        varying = run_plan.varying_keys()
        for run in run_plan.runs:
            store.add_run(
                run.id, run.raw, run.fingerprint, name=run_name(run.id, run.flat(), varying), cause="plan"
            )
    if not existing:
        store.set_meta("source", run_plan.source)
    # The policy of this `rf run` steers from now on: it is not part of the plan's identity.
    store.set_meta(POLICY_META, json.dumps(dataclasses.asdict(first.policy)))
    tracker = MlflowTracker(tracking_uri_for(folder), first.name)
    return Experiment(folder, store, tracker)


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
