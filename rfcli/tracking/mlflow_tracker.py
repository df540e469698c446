"""`MlflowTracker`: logs rf runs to MLflow through an explicit `MlflowClient`.

No global active run: one process (the controller) logs many rf runs side by side, each by its
MLflow run id. MLflow is imported when a tracker is built, never at module level (about 1.3 s).

By default an experiment is tracked in `<experiment folder>/mlflow.db`; an experiment created
with another tracking URI (say a shared `http://` server) keeps it in `<folder>/tracking_uri`.

A tracker opens its store on a thread of its own (importing MLflow and creating or migrating a
new SQLite store takes 2 to 3 s, 20 s under load), so `rf run` starts its first chunks meanwhile;
the first call that needs the store waits for it, and an error in opening it is raised there. The
thread does not hold the process up when it exits (Ctrl-C during start-up): a new SQLite store is
built beside its place and renamed into it once complete, so an exit at any moment leaves either
no store or a whole one.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rfcli.errors import DamagedFileError
from rfcli.store.layout import ExperimentLayout
from rfcli.store.sqlite_files import sqlite_file_problem

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

# MLflow's own limits (mlflow/utils/validation.py): a request it refuses fails the whole batch.
MAX_PARAMS_PER_BATCH = 100
MAX_METRICS_PER_BATCH = 1000
MAX_PARAM_VALUE_LENGTH = 6000
MAX_TAG_VALUE_LENGTH = 8000
MAX_KEY_LENGTH = 250
RUN_END_STATUSES = ("FINISHED", "FAILED", "KILLED")

# Characters MLflow accepts in param, metric and tag names (POSIX); anything else becomes "_",
# so a TRL metric such as "rewards/<lambda>/mean" is logged instead of failing its whole batch.
_BAD_KEY_CHARACTERS = re.compile(r"[^\w./\- :]")

_OPENING = threading.Lock()
"""The trackers of a process open one after another: two first opens of one new SQLite store at
once would both create it."""
SQLITE_PREFIX = "sqlite:///"


def default_tracking_uri(experiment_folder: Path) -> str:
    """`sqlite:///<absolute folder>/mlflow.db`: the experiment's own local MLflow store."""
    return f"sqlite:///{ExperimentLayout(Path(experiment_folder).resolve()).mlflow_db.as_posix()}"


def tracking_uri_for(experiment_folder: Path) -> str:
    """The tracking URI remembered for this experiment, else its local `mlflow.db`."""
    path = ExperimentLayout(Path(experiment_folder)).tracking_uri_file
    remembered = path.read_text(encoding="utf-8").strip() if path.is_file() else ""
    return remembered or default_tracking_uri(experiment_folder)


def remember_tracking_uri(experiment_folder: Path, uri: str) -> None:
    """Record `uri` for this experiment (at creation). The default is not written down, so a
    moved or copied experiment folder keeps finding its own `mlflow.db`."""
    path = ExperimentLayout(Path(experiment_folder)).tracking_uri_file
    if uri == default_tracking_uri(experiment_folder):
        path.unlink(missing_ok=True)
    else:
        path.write_text(uri + "\n", encoding="utf-8")


def check_tracking_store(experiment_folder: Path, tracked: list[int]) -> None:
    """The experiment's local MLflow store is whole, or absent while no run (`tracked`: the ids of
    runs with an MLflow run) was logged there; MLflow would otherwise make a fresh store in its
    place, or fail deep inside a later write."""
    uri = tracking_uri_for(experiment_folder)
    if not uri.startswith(SQLITE_PREFIX):
        return
    path = Path(uri.removeprefix(SQLITE_PREFIX))
    problem = sqlite_file_problem(path) if path.exists() else "is missing" if tracked else None
    if problem is None:
        return
    if not tracked:
        what_to_do = "no run was logged there yet: move it away, and rf makes a new one"
    else:
        runs = f"run {tracked[0]}" if len(tracked) == 1 else f"runs {', '.join(map(str, tracked))}"
        recover = f", or recover what SQLite can still read (`sqlite3 {path.name} '.recover' | sqlite3 x.db`)"
        readable = path.exists() and path.stat().st_size > 0
        what_to_do = (
            f"it holds the MLflow history of {runs}, so rf will not make a new one there: restore it from "
            f"a backup{recover if readable else ''}; every metric is also in the state store (rf status)"
        )
    raise DamagedFileError(
        f"the MLflow store {path} {problem}; {what_to_do}", problem=f"{path.name} {problem}"
    )


def mlflow_key(key: str) -> str:
    """`key` as MLflow accepts it: bad characters replaced by '_', at most 250 characters."""
    return _BAD_KEY_CHARACTERS.sub("_", key)[:MAX_KEY_LENGTH]


def param_value(value: Any) -> str:
    """A param value as the text MLflow stores: lists and mappings as JSON, cut to 6000 chars."""
    text = json.dumps(value, default=str) if isinstance(value, (list, tuple, dict)) else str(value)
    return text[:MAX_PARAM_VALUE_LENGTH]


class MlflowTracker:
    """One MLflow experiment; each rf run is one MLflow run in it, addressed by its run id."""

    def __init__(self, tracking_uri: str, experiment_name: str) -> None:
        # With an http:// URI, ending a run prints "View run ... at ..." to stdout, which would
        # scribble over a terminal UI; users open `rf ui` or their server instead.
        os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
        self.tracking_uri = tracking_uri
        self.experiment_name = experiment_name
        self._opened: Future[tuple[MlflowClient, str]] = Future()
        threading.Thread(target=self._open_in_background, name="rf-mlflow-open", daemon=True).start()

    @property
    def is_open(self) -> bool:
        """Whether the store is open (or failed to open): a call now would not wait for it."""
        return self._opened.done()

    @property
    def _client(self) -> MlflowClient:
        return self._opened.result()[0]

    def _open_in_background(self) -> None:
        with _OPENING:
            try:
                self._opened.set_result(self._open())
            except BaseException as error:  # noqa: BLE001 - raised where the store is first needed
                self._opened.set_exception(error)

    @property
    def experiment_id(self) -> str:
        return self._opened.result()[1]

    def _open(self) -> tuple[MlflowClient, str]:
        from mlflow.tracking import MlflowClient

        _quiet_mlflow_logging()
        if self.tracking_uri.startswith(SQLITE_PREFIX):
            create_whole(Path(self.tracking_uri.removeprefix(SQLITE_PREFIX)))
        client = MlflowClient(tracking_uri=self.tracking_uri)
        return client, self._experiment_id(client, self.experiment_name)

    def start_run(self, run_name: str, params: dict[str, Any], tags: dict[str, str]) -> str:
        """Create an MLflow run with these (already flattened, dotted) params; its run id."""
        client = self._client  # first: MLflow imports on the opening thread until then
        from mlflow.entities import Param

        run = client.create_run(self.experiment_id, run_name=run_name, tags=_tag_values(tags))
        run_id: str = run.info.run_id
        # A dict, so two keys that became the same MLflow key are logged once (a batch with a
        # param twice under different values is refused).
        values = {mlflow_key(key): param_value(value) for key, value in params.items()}
        entries = [Param(key, value) for key, value in values.items()]
        for start in range(0, len(entries), MAX_PARAMS_PER_BATCH):
            client.log_batch(run_id, params=entries[start : start + MAX_PARAMS_PER_BATCH])
        return run_id

    def log_metrics(self, mlflow_run_id: str, rows: Sequence[tuple[int, str, float]]) -> None:
        """Log (step, key, value) rows, one `log_batch` per 1000. NaN is stored as NaN; MLflow's
        SQL store turns +/-inf into +/-1.8e308 (the largest float)."""
        client = self._client  # first: MLflow imports on the opening thread until then
        from mlflow.entities import Metric

        timestamp = int(time.time() * 1000)
        metrics = [Metric(mlflow_key(key), float(value), timestamp, int(step)) for step, key, value in rows]
        for start in range(0, len(metrics), MAX_METRICS_PER_BATCH):
            client.log_batch(mlflow_run_id, metrics=metrics[start : start + MAX_METRICS_PER_BATCH])

    def set_tags(self, mlflow_run_id: str, tags: dict[str, str]) -> None:
        client = self._client  # first: MLflow imports on the opening thread until then
        from mlflow.entities import RunTag

        entries = [RunTag(key, value) for key, value in _tag_values(tags).items()]
        for start in range(0, len(entries), MAX_PARAMS_PER_BATCH):
            client.log_batch(mlflow_run_id, tags=entries[start : start + MAX_PARAMS_PER_BATCH])

    def end_run(self, mlflow_run_id: str, status: str) -> None:
        """Mark the run ended: FINISHED, FAILED or KILLED."""
        if status not in RUN_END_STATUSES:
            raise ValueError(f"MLflow run status '{status}' is not one of {', '.join(RUN_END_STATUSES)}")
        self._client.set_terminated(mlflow_run_id, status=status)

    def metric_history(self, mlflow_run_id: str, key: str) -> list[tuple[int, float]]:
        """Every logged (step, value) of one metric, by step."""
        history = self._client.get_metric_history(mlflow_run_id, mlflow_key(key))
        return sorted((metric.step, metric.value) for metric in history)

    def logged_rows(
        self, mlflow_run_id: str, keys: Sequence[str] | None = None
    ) -> list[tuple[int, str, float]]:
        """Every (step, key, value) the run holds for `keys` (default: every key it has logged),
        duplicates included, by step then key. Keys are as `mlflow_key` makes them."""
        if keys is None:
            keys = list(self._client.get_run(mlflow_run_id).data.metrics)
        rows = [
            (step, mlflow_key(key), value)
            for key in dict.fromkeys(mlflow_key(key) for key in keys)
            for step, value in self.metric_history(mlflow_run_id, key)
        ]
        return sorted(rows, key=lambda row: (row[0], row[1]))

    def tags(self, mlflow_run_id: str) -> dict[str, str]:
        """The run's own tags (MLflow's `mlflow.*` system tags left out)."""
        tags = self._client.get_run(mlflow_run_id).data.tags
        return {key: value for key, value in tags.items() if not key.startswith("mlflow.")}

    def delete_tag(self, mlflow_run_id: str, key: str) -> None:
        from mlflow.exceptions import MlflowException

        try:
            self._client.delete_tag(mlflow_run_id, mlflow_key(key))
        except MlflowException:  # it had no such tag (already deleted before a kill)
            pass

    def rename_run(self, mlflow_run_id: str, name: str) -> None:
        self._client.update_run(mlflow_run_id, name=name)

    def status(self, mlflow_run_id: str) -> str:
        """RUNNING, or how it ended: FINISHED, FAILED or KILLED."""
        return str(self._client.get_run(mlflow_run_id).info.status)

    def reopen(self, mlflow_run_id: str) -> None:
        """An ended run trains again (a failed run retried): RUNNING, with no end time."""
        self._client.update_run(mlflow_run_id, status="RUNNING")

    def runs_tagged(self, key: str, value: str) -> list[tuple[str, dict[str, str]]]:
        """(run id, tags) of every active run of the experiment whose tag `key` is `value`."""
        found: list[tuple[str, dict[str, str]]] = []
        token: str | None = None
        while True:
            page = self._client.search_runs(
                [self.experiment_id],
                filter_string=f"tags.`{mlflow_key(key)}` = '{value}'",
                max_results=1000,
                page_token=token,
            )
            found.extend((run.info.run_id, dict(run.data.tags)) for run in page)
            token = page.token
            if not token:
                return found

    def delete_run(self, mlflow_run_id: str) -> None:
        """MLflow's soft delete: the run leaves the experiment's views and can be restored."""
        self._client.delete_run(mlflow_run_id)

    def _experiment_id(self, client: MlflowClient, name: str) -> str:
        """Get the experiment by name, restoring it if deleted in the UI, or create it."""
        from mlflow.exceptions import MlflowException

        experiment = client.get_experiment_by_name(name)
        if experiment is not None:
            if experiment.lifecycle_stage == "deleted":
                client.restore_experiment(experiment.experiment_id)
            return str(experiment.experiment_id)
        try:
            artifact_location = _artifact_location(self.tracking_uri)
            return str(client.create_experiment(name, artifact_location=artifact_location))
        except MlflowException:
            # Another process created it between our look-up and create.
            experiment = client.get_experiment_by_name(name)
            if experiment is None:
                raise
            return str(experiment.experiment_id)


def create_whole(path: Path) -> None:
    """A new SQLite store built (MLflow's tables and migrations) under a name of its own, then
    renamed to `path`: never a half-made store at `path`. Nothing to do when `path` exists."""
    from mlflow.tracking import MlflowClient

    if path.exists() or path.name == ":memory:":
        return
    for stale in path.parent.glob(f".{path.name}.*.new"):  # left by an exit while building
        stale.unlink(missing_ok=True)
    # A name never used before: MLflow keeps an engine per URI, which a reused name would find.
    staging = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.new")
    MlflowClient(tracking_uri=f"{SQLITE_PREFIX}{staging}").search_experiments(max_results=1)
    os.replace(staging, path)


def _tag_values(tags: dict[str, str]) -> dict[str, str]:
    return {mlflow_key(key): str(value)[:MAX_TAG_VALUE_LENGTH] for key, value in tags.items()}


def _artifact_location(tracking_uri: str) -> str | None:
    """For a local SQLite store, artifacts go next to it; else MLflow picks (its default for
    SQLite, `./mlruns` under whatever folder the process started in, would scatter them)."""
    prefix = "sqlite:///"
    if not tracking_uri.startswith(prefix) or ":memory:" in tracking_uri:
        return None
    return (Path(tracking_uri.removeprefix(prefix)).resolve().parent / "mlartifacts").as_uri()


def _quiet_mlflow_logging() -> None:
    """MLflow logs schema creation and migrations at INFO when it opens a new SQLite store
    ("Creating initial MLflow database tables...", alembic steps); keep them off the terminal."""
    for name in ("mlflow.store", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
