"""An experiment's results as the store holds them: each run's settings, curves, latest metrics and
how it ended. Reads SQLite only (no torch, no MLflow), so `rf compare` and `rf report` start at once.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from rfcli.config.policy import POLICY_META, policy_from_json
from rfcli.config.schema import PolicyConfig
from rfcli.engine.learning_signal import WARNING
from rfcli.errors import NotFoundError
from rfcli.results.settings import differing_settings, settings_label
from rfcli.store.database import ExperimentStore, RecordNotFoundError, RunRecord
from rfcli.store.layout import ExperimentLayout
from rfcli.store.states import ENDED_EARLY

Curve = list[tuple[int, float]]


@dataclass(frozen=True)
class RunResult:
    run: RunRecord
    settings: dict[str, str]
    """The settings that set this run apart from the others (dotted key -> value)."""
    latest: dict[str, float]
    curves: dict[str, Curve]
    """Every logged metric: key -> (step, value) points, by step."""
    ended_by: str | None = None
    """Who or what stopped, failed or deleted the run ('rf ctl', 'policy', 'error', ...)."""
    warning: str | None = None
    """What makes its results doubtful (no learning signal, say), as the controller recorded it."""

    @property
    def label(self) -> str:
        return f"{self.run.id} {settings_label(self.settings)}".strip()

    @property
    def outcome(self) -> str:
        """The run's state, saying when a policy stopped it."""
        if self.run.state == "stopped" and self.ended_by == "policy":
            return "stopped by policy"
        return self.run.state

    @property
    def ended_early(self) -> bool:
        """Left the schedule before its last chunk: stopped, failed or deleted."""
        return self.run.state in ENDED_EARLY

    def value(self, metric: str) -> float | None:
        value = self.latest.get(metric)
        return value if value is not None and math.isfinite(value) else None


@dataclass(frozen=True)
class ExperimentResults:
    folder: Path
    runs: list[RunResult]
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    """The policy the experiment was last trained under: its `mode` says which way its metric ranks."""

    @property
    def name(self) -> str:
        return self.folder.name

    def run(self, run_id: int) -> RunResult:
        for result in self.runs:
            if result.run.id == run_id:
                return result
        known = ", ".join(str(result.run.id) for result in self.runs) or "none"
        raise NotFoundError(f"experiment '{self.name}' has no run {run_id}; its runs are: {known}")

    def ranked(self, metric: str, mode: str) -> list[RunResult]:
        """Runs with a finite latest `metric`, best first: the lowest for mode 'min', the highest for
        'max'. Deleted runs are left out."""
        scored = [r for r in self.runs if r.value(metric) is not None and r.run.state != "deleted"]
        return sorted(scored, key=lambda r: r.value(metric) or 0.0, reverse=mode == "max")

    def logged_metrics(self) -> list[str]:
        return sorted({key for result in self.runs for key in result.latest})


def load_results(folder: Path, run_ids: list[int] | None = None) -> ExperimentResults:
    """Every run of the experiment in `folder` (or only `run_ids`, in that order), settings compared
    among the runs loaded."""
    with ExperimentStore(ExperimentLayout(folder).state_db, create=False) as store:
        try:
            runs = store.runs() if run_ids is None else [store.run(run_id) for run_id in run_ids]
        except RecordNotFoundError as missing:
            raise NotFoundError(str(missing)) from None
        settings = differing_settings({run.id: run.config for run in runs})
        warnings = run_warnings(store)
        results = [
            RunResult(
                run=run,
                settings=settings[run.id],
                latest=store.latest_metrics(run.id),
                curves=curves(store, run.id),
                ended_by=ended_by(store, run),
                warning=warnings.get(run.id),
            )
            for run in runs
        ]
        policy = policy_from_json(store.get_meta(POLICY_META))
    return ExperimentResults(folder, results, policy)


def curves(store: ExperimentStore, run_id: int) -> dict[str, Curve]:
    points: dict[str, Curve] = defaultdict(list)
    for step, key, value in store.metrics(run_id):
        points[key].append((step, value))
    return dict(points)


def ended_by(store: ExperimentStore, run: RunRecord) -> str | None:
    if run.state not in ENDED_EARLY:
        return None
    latest = next((event for event in store.events(limit=50, run_id=run.id) if event.kind == run.state), None)
    return None if latest is None else latest.cause


def run_warnings(store: ExperimentStore) -> dict[int, str]:
    """Each run's warning (no learning signal, say), by run id: one per run, so a run's count is small."""
    warnings: dict[int, str] = {}
    for event in reversed(store.events(limit=1_000_000, kind=WARNING)):
        if event.run_id is not None:
            warnings.setdefault(event.run_id, event.detail or "")
    return warnings
