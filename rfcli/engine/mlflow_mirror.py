"""MLflow mirrors the store: each rf run is one MLflow run that holds exactly the store's metric rows.

The store is the truth and MLflow follows it. A run's `mlflow_synced_step` is how far its MLflow run is
known to hold exactly the store's rows; beyond that step it may hold what a kill or a retry left there:
rows sent before their step was marked (the first `log_batch` of several, say), or a failed attempt's
steps that a retry took out of the store. So after a kill (`resync`, when `rf run` starts) and after a
retry (its command is mirrored), what MLflow holds beyond that step is read back and compared with the
store (`tracking.resync`): the rows it lacks are sent, and if it holds anything else, the rf run gets a
fresh MLflow run with every row, and the old one stays in the experiment as an earlier attempt.

Commands reach MLflow through the store: applying one also defers it (`defer_to_controller`, in the
same transaction), and it is settled once mirrored, so a kill in between mirrors it on the next turn.
An MLflow run made for an rf run whose id a kill kept out of the store is removed (`remove_orphans`).
"""

from __future__ import annotations

import dataclasses
import uuid

from rfcli.config.plan import flatten, to_typed_config
from rfcli.store.database import CommandRecord, ExperimentStore, RunRecord
from rfcli.store.states import RunState
from rfcli.tracking.mlflow_tracker import MlflowTracker, mlflow_key
from rfcli.tracking.resync import compare

END_STATUS = {RunState.COMPLETED: "FINISHED", RunState.FAILED: "FAILED", RunState.DELETED: "KILLED"}
RUN_TAG = "rf.run_id"
EXPERIMENT_TAG = "rf.experiment"
"""The experiment's own id: the MLflow runs rf may remove are those it made for this experiment."""
ATTEMPT_TAG = "rf.attempt_of"
"""On an MLflow run replaced by a fresh one: the rf run it was an earlier attempt of."""
ERROR_TAG = "rf.error"
"""Why the run failed; an earlier attempt keeps it, a retried run loses it."""
EXPERIMENT_ID_META = "experiment_id"


class MlflowMirror:
    def __init__(self, store: ExperimentStore, tracker: MlflowTracker) -> None:
        self.store = store
        self.tracker = tracker

    def experiment_id(self) -> str:
        """Made once, by the first controller (the lock's holder), and kept in the store."""
        known = self.store.get_meta(EXPERIMENT_ID_META)
        if known is None:
            known = uuid.uuid4().hex
            self.store.set_meta(EXPERIMENT_ID_META, known)
        return known

    def start(self, run: RunRecord) -> RunRecord:
        """The rf run's MLflow run, with the config it runs with (defaults included) as params."""
        tags = {RUN_TAG: str(run.id), EXPERIMENT_TAG: self.experiment_id(), "rf.fingerprint": run.fingerprint}
        if run.parent_id is not None:
            tags.update({"rf.parent": str(run.parent_id), "rf.warm_start": str(run.warm_start).lower()})
        self.store.set_mlflow_run(run.id, self.tracker.start_run(run.name, params(run), tags))
        return self.store.run(run.id)

    def flush(self, run_id: int) -> None:
        """Send the run's new rows (its MLflow run made first if it has none); end it once it ended."""
        run = self.store.run(run_id)
        new = run.mlflow_run_id is None
        if new and run.state == RunState.DELETED:
            return
        if new:
            run = self.start(run)
        self.sync(run)
        if run.state == RunState.COMPLETED or (new and run.state in END_STATUS):
            self.end(run)

    def sync(self, run: RunRecord) -> None:
        rows = self.store.metrics(run.id, after_step=run.mlflow_synced_step)
        if run.mlflow_run_id is None or not rows:
            return
        self.tracker.log_metrics(run.mlflow_run_id, rows)
        self.store.mark_mlflow_synced(run.id, max(step for step, _, _ in rows))

    def resync(self, run: RunRecord, every_key: bool = False) -> bool:
        """Bring the run's MLflow run to exactly the store's rows by what it holds beyond the synced
        step: the keys the store has there (after a kill), or every key it ever logged (after a retry,
        which takes the failed attempt's rows out of the store). True when it had to be replaced."""
        assert run.mlflow_run_id is not None
        after = run.mlflow_synced_step
        stored = self.store.metrics(run.id, after_step=after)
        rows = [(step, mlflow_key(key), value) for step, key, value in stored]
        if not rows and not every_key:
            return False
        keys = None if every_key else sorted({key for _, key, _ in rows})
        logged = [row for row in self.tracker.logged_rows(run.mlflow_run_id, keys) if row[0] > after]
        outcome = compare(rows, logged)
        if outcome.replace:
            self.replace(run)
            return True
        if outcome.missing:
            self.tracker.log_metrics(run.mlflow_run_id, outcome.missing)
        if rows:
            self.store.mark_mlflow_synced(run.id, max(step for step, _, _ in rows))
        return False

    def replace(self, run: RunRecord) -> None:
        """A fresh MLflow run holding every row of the store, with the old one's tags; the old one is
        renamed and kept as an earlier attempt. In this order, so a kill anywhere leaves at most an
        orphan that `remove_orphans` takes away, and the old run is never mistaken for one."""
        old = run.mlflow_run_id
        assert old is not None
        kept = self.tracker.tags(old).items()
        tags = {key: value for key, value in kept if key not in (ATTEMPT_TAG, ERROR_TAG)}
        self.tracker.set_tags(old, {ATTEMPT_TAG: str(run.id)})
        self.tracker.delete_tag(old, RUN_TAG)
        self.tracker.rename_run(old, f"{run.name} (earlier attempt)")
        if self.tracker.status(old) == "RUNNING":
            self.tracker.end_run(old, "KILLED")
        tags.update({RUN_TAG: str(run.id), "rf.earlier_attempt": old})
        new = self.tracker.start_run(run.name, params(run), tags)
        rows = self.store.metrics(run.id)
        self.tracker.log_metrics(new, rows)
        self.store.set_mlflow_run(run.id, new)
        self.store.mark_mlflow_synced(run.id, max((step for step, _, _ in rows), default=-1))
        self.end(self.store.run(run.id))

    def end(self, run: RunRecord) -> None:
        if run.mlflow_run_id is not None and run.state in END_STATUS:
            self.tracker.end_run(run.mlflow_run_id, END_STATUS[run.state])

    def fail(self, run: RunRecord, error: str) -> None:
        if run.mlflow_run_id is not None:
            self.tracker.set_tags(run.mlflow_run_id, {ERROR_TAG: error})
            self.end(run)

    def remove_orphans(self) -> None:
        """MLflow runs this experiment made for an rf run that the store does not point to: a kill
        came between making one and recording its id. They hold nothing the store lacks."""
        recorded = {run.mlflow_run_id for run in self.store.runs()}
        for mlflow_run_id, tags in self.tracker.runs_tagged(EXPERIMENT_TAG, self.experiment_id()):
            if RUN_TAG in tags and mlflow_run_id not in recorded:
                self.tracker.delete_run(mlflow_run_id)

    def mirror_command(self, command: CommandRecord) -> None:
        """What MLflow shows of an applied command: the run's state and who asked; a deleted run ends;
        a retried run trains on in an MLflow run that holds what the store holds."""
        run = self.store.run(command.run_id)
        if run.mlflow_run_id is None or command.verb == "clone":
            return
        if command.verb == "retry" and not self.resync(run, every_key=True):
            self.tracker.reopen(run.mlflow_run_id)  # it trains on in the MLflow run that failed
            self.tracker.delete_tag(run.mlflow_run_id, ERROR_TAG)
        run = self.store.run(run.id)
        assert run.mlflow_run_id is not None
        tags = {"rf.state": run.state, f"rf.{command.verb}_cause": command.cause}
        self.tracker.set_tags(run.mlflow_run_id, tags)
        if command.verb == "delete":
            self.tracker.end_run(run.mlflow_run_id, "KILLED")

    def mirror_deferred(self) -> None:
        """Every applied command not mirrored yet, oldest first, each settled once it is."""
        for command in self.store.deferred_commands():
            self.mirror_command(command)
            self.store.settle_deferred([command.id])


def params(run: RunRecord) -> dict[str, object]:
    return flatten(dataclasses.asdict(to_typed_config(run.config)))
