"""The loop of `rf run`: give free workers the runs furthest behind, record what comes back.

The store is the truth: a chunk counts as done only once its checkpoint is on disk and the store
says so, and MLflow mirrors the store's metrics from the last step it already holds. So a killed
`rf run` resumes every run from its last recorded chunk and logs no metric step twice.
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from rfcli.config.plan import flatten, to_typed_config
from rfcli.engine.control import CommandApplier, mirror_command
from rfcli.engine.judging import Judge
from rfcli.engine.messages import (
    ChunkDone,
    ChunkFailed,
    ChunkProgress,
    ChunkTrained,
    ReleaseRun,
    TrainChunk,
    WorkerReply,
)
from rfcli.engine.pool import Pool
from rfcli.engine.progress import LiveProgress
from rfcli.engine.refill import Refill
from rfcli.engine.scheduler import RunProgress, next_assignments
from rfcli.store.database import CHUNK_KEY, ExperimentStore, RunRecord
from rfcli.store.layout import ExperimentLayout, stale_checkpoints
from rfcli.store.states import SCHEDULABLE
from rfcli.tracking.mlflow_tracker import MlflowTracker

MLFLOW_END_STATUS = {"completed": "FINISHED", "failed": "FAILED", "deleted": "KILLED"}


@dataclass
class Placement:
    """Where each run is: training on a worker, or parked in a worker's memory at a step."""

    busy: dict[int, int] = field(default_factory=dict)
    parked: dict[int, tuple[int, int]] = field(default_factory=dict)
    saving: dict[int, int] = field(default_factory=dict)
    """Runs whose chunk is trained, on the worker that is writing its checkpoint: not done yet."""

    def in_flight(self) -> dict[int, int]:
        """Runs whose chunk is not recorded yet: training, or its checkpoint being written."""
        return {**self.saving, **self.busy}


class Controller:
    def __init__(
        self,
        store: ExperimentStore,
        tracker: MlflowTracker,
        pool: Pool,
        announce: Callable[[str], None],
    ) -> None:
        self.store = store
        self.tracker = tracker
        self.pool = pool
        self.announce = announce
        self.placement = Placement()
        self.layout = ExperimentLayout(pool.experiment)
        self.commands = CommandApplier(store, self.layout, self.after_command)
        self.leaving = False
        """Set when the person leaves the view: chunks in flight finish, nothing new starts."""
        self.unsynced: set[int] = set()
        """Runs with metrics recorded in the store but not yet sent to MLflow."""
        self.judge = Judge(store, tracker)
        """The experiment's policy (sha, asha, pbt), if any: decides after each recorded chunk."""
        self.refill = Refill(store)
        """The experiment's model-based search, if any: fills each free slot with its next proposal."""
        self.progress = LiveProgress()
        """Each training run's place inside its chunk, for the live table."""
        self.lost_at: dict[int, int] = {}
        """Runs whose worker died under them: the chunk count they had recorded then."""

    def run(self, refresh: Callable[[], None]) -> None:
        """Train until no run can make progress; `refresh` redraws the view between replies."""
        self.store.add_event(None, "started", cause="rf run", detail=self.pool.describe())
        self.recover()
        self.decide()  # a decision a killed rf run did not get to record
        self.steer_and_dispatch()  # commands that came while rf run was away may give it work
        while self.busy_or_schedulable():
            self.steer_and_dispatch()
            replies = self.pool.replies(timeout=0.25)
            for reply in replies:
                self.handle(reply)
            if replies:
                self.steer_and_dispatch()  # a worker is free: give it work before the bookkeeping
            self.flush_mlflow()
            self.check_workers()
            refresh()

    def steer_and_dispatch(self) -> None:
        for line in self.commands.apply_pending(busy=self.placement.in_flight()):
            self.announce(line)
        if not self.leaving:
            for line in self.refill.fill_free_slots():  # a slot freed by a stop, a failure, an end
                self.announce(line)
            self.dispatch()

    def busy_or_schedulable(self) -> bool:
        if self.leaving:
            return bool(self.placement.in_flight())
        return bool(self.placement.in_flight()) or any(run.state in SCHEDULABLE for run in self.store.runs())

    def after_command(self, run: RunRecord, verb: str, cause: str) -> None:
        if verb in ("stop", "delete"):
            # A stopped run gives its worker back the memory it held (adapter, optimizer, trainer):
            # a policy stops most runs, and on a shared model each parked adapter also slows every
            # step of the others. Resumed, it is rebuilt from its checkpoint, like after a kill.
            parked = self.placement.parked.pop(run.id, None)
            if parked is not None:
                self.pool.send(parked[0], ReleaseRun(run.id))
        mirror_command(self.tracker, run, verb, cause)

    def recover(self) -> None:
        """Runs left 'running' by a killed `rf run` go back to their last recorded chunk; a deleted
        run's checkpoints, left by a kill between the delete and their removal, go."""
        for run in self.store.runs():
            if run.state == "deleted":
                shutil.rmtree(self.layout.run_folder(run.id), ignore_errors=True)
            if run.state == "running":
                self.store.set_state(run.id, "ready", cause="recovery", detail="rf run restarted")
                self.announce(f"run {run.id}: resumes from chunk {run.chunks_done} (step {run.global_step})")
            if run.mlflow_run_id is not None:
                self.resync_mlflow(run)

    def dispatch(self) -> None:
        runs = self.store.runs()
        free = [w.worker_id for w in self.pool.workers if w.worker_id not in self.placement.busy.values()]
        progress = [
            RunProgress(
                run_id=run.id,
                chunks_done=run.chunks_done,
                total_chunks=run.total_chunks,
                last_worker=self.placement.parked[run.id][0] if run.id in self.placement.parked else None,
                schedulable=run.state in SCHEDULABLE,
            )
            for run in runs
        ]
        by_id = {run.id: run for run in runs}
        for assignment in next_assignments(progress, free, set(self.placement.in_flight())):
            self.start_chunk(by_id[assignment.run_id], assignment.worker)

    def start_chunk(self, run: RunRecord, worker: int) -> None:
        parked = self.placement.parked.pop(run.id, None)
        if parked is not None and parked[0] != worker:
            self.pool.send(parked[0], ReleaseRun(run.id))
        if run.mlflow_run_id is None:
            self.unsynced.add(run.id)  # its MLflow run is made on the next flush, not on the way to a worker
        self.store.set_state(run.id, "running", cause="scheduler", detail=f"worker {worker}", worker=worker)
        self.placement.busy[run.id] = worker
        self.pool.send(worker, TrainChunk(run.id, run.config, run.checkpoint, run.global_step))

    def handle(self, reply: WorkerReply) -> None:
        if isinstance(reply, ChunkProgress):
            self.note_progress(reply)
            return
        if isinstance(reply, ChunkTrained):
            # The worker is free; the chunk is done once its checkpoint is (a ChunkDone can come first).
            self.progress.chunk_ended(reply.run_id)
            if self.placement.busy.pop(reply.run_id, None) is not None:
                self.placement.saving[reply.run_id] = reply.worker
                detail = f"chunk {reply.chunk_index}; its checkpoint is being written"
                self.store.add_event(reply.run_id, "trained", cause="scheduler", detail=detail)
            return
        self.progress.chunk_ended(reply.run_id)
        self.placement.busy.pop(reply.run_id, None)
        self.placement.saving.pop(reply.run_id, None)
        if isinstance(reply, ChunkFailed):
            self.store.add_metrics(reply.run_id, reply.metrics)
            self.unsynced.add(reply.run_id)
            self.fail(reply.run_id, reply.error)
            return
        self.record(reply)

    def note_progress(self, progress: ChunkProgress) -> None:
        """In memory only, except a run's totals: the store gets them once, before its first chunk ends."""
        if progress.run_id not in self.placement.busy:
            return
        if (
            progress.run_id not in self.progress.in_chunk
            and self.store.run(progress.run_id).total_chunks is None
        ):
            self.store.set_plan_totals(progress.run_id, progress.total_chunks, progress.max_steps)
        self.progress.note(progress)

    def record(self, done: ChunkDone) -> None:
        before = self.store.run(done.run_id)
        steps = done.global_step - before.global_step
        timing = [
            (done.global_step, "rf/chunk_seconds", done.seconds),
            (done.global_step, "rf/setup_seconds", done.setup_seconds),
            (done.global_step, "rf/save_seconds", done.save_seconds),
            (done.global_step, "rf/write_seconds", done.write_seconds),
            (done.global_step, "rf/steps_per_second", steps / done.seconds if done.seconds > 0 else 0.0),
            (done.global_step, CHUNK_KEY, float(done.chunk_index)),
        ]
        if before.total_chunks is None:
            self.store.set_plan_totals(done.run_id, done.total_chunks, done.max_steps)
        self.store.record_chunk(
            done.run_id,
            chunks_done=done.chunk_index,
            global_step=done.global_step,
            checkpoint=done.checkpoint,
            metrics=done.metrics + timing,
        )
        state = "completed" if done.finished else "ready"
        self.store.set_state(done.run_id, state, cause="scheduler", detail=f"chunk {done.chunk_index}")
        self.remove_stale_checkpoints(done.run_id, Path(done.checkpoint))
        if done.finished:
            self.pool.send(done.worker, ReleaseRun(done.run_id))
        else:
            self.placement.parked[done.run_id] = (done.worker, done.global_step)
        self.unsynced.add(done.run_id)
        run = self.store.run(done.run_id)
        self.announce(chunk_line(run, self.store.latest_metrics(run.id), done))
        self.decide()

    def decide(self) -> None:
        """The policy's decisions go into the store with their commands, applied before the next dispatch."""
        for line in self.judge.after_chunk():
            self.announce(line)

    def remove_stale_checkpoints(self, run_id: int, recorded: Path) -> None:
        """Only now that the store points to `recorded`: older checkpoints are never needed again."""
        folder = self.layout.checkpoints(run_id)
        for stale in stale_checkpoints(folder.iterdir() if folder.is_dir() else [], recorded):
            shutil.rmtree(stale, ignore_errors=True)

    def fail(self, run_id: int, error: str) -> None:
        self.placement.parked.pop(run_id, None)
        self.progress.chunk_ended(run_id)
        self.store.set_state(run_id, "failed", cause="error", error=error)
        run = self.store.run(run_id)
        if run.mlflow_run_id is not None:
            self.tracker.set_tags(run.mlflow_run_id, {"rf.error": error})
            self.end_mlflow_run(run)
        self.announce(f"run {run_id}: failed: {error}")

    def check_workers(self) -> None:
        """A worker that died (killed, out of memory, its node lost) is replaced, and the run it was
        training, or whose checkpoint it was writing, goes back to its last recorded chunk; a run under
        which workers die twice at the same chunk is the likely cause (out of memory) and fails."""
        for worker, how in self.pool.dead_workers().items():
            for run_id, busy_on in self.placement.in_flight().items():
                if busy_on == worker:
                    self.placement.busy.pop(run_id, None)
                    self.placement.saving.pop(run_id, None)
                    self.lose_chunk(run_id, f"worker {worker} died ({how}) while training this run")
            for run_id, (parked_on, _) in list(self.placement.parked.items()):
                if parked_on == worker:
                    del self.placement.parked[run_id]
            self.pool.restart(worker)

    def lose_chunk(self, run_id: int, what: str) -> None:
        run = self.store.run(run_id)
        if self.lost_at.get(run_id) == run.chunks_done:
            self.fail(run_id, f"{what}, twice at chunk {run.chunks_done + 1}")
            return
        self.lost_at[run_id] = run.chunks_done
        self.store.set_state(run_id, "ready", cause="recovery", detail=what)
        self.announce(f"run {run_id}: {what}; it trains chunk {run.chunks_done + 1} again")

    # MLflow mirrors the store.

    def start_mlflow_run(self, run: RunRecord) -> None:
        tags = {"rf.run_id": str(run.id), "rf.fingerprint": run.fingerprint}
        if run.parent_id is not None:
            tags.update({"rf.parent": str(run.parent_id), "rf.warm_start": str(run.warm_start).lower()})
        params = flatten(dataclasses.asdict(to_typed_config(run.config)))  # with the defaults it ran with
        mlflow_run_id = self.tracker.start_run(run.name, params, tags)
        self.store.set_mlflow_run(run.id, mlflow_run_id)

    def flush_mlflow(self) -> None:
        """Send recorded metrics to MLflow, and end the MLflow runs of runs that finished."""
        while self.unsynced:
            run = self.store.run(self.unsynced.pop())
            new = run.mlflow_run_id is None
            if new and run.state == "deleted":
                continue
            if new:
                self.start_mlflow_run(run)
                run = self.store.run(run.id)
            self.sync_mlflow(run)
            if run.state == "completed" or (new and run.state in MLFLOW_END_STATUS):
                self.end_mlflow_run(run)

    def sync_mlflow(self, run: RunRecord) -> None:
        rows = self.store.metrics(run.id, after_step=run.mlflow_synced_step)
        if run.mlflow_run_id is None or not rows:
            return
        self.tracker.log_metrics(run.mlflow_run_id, rows)
        self.store.mark_mlflow_synced(run.id, max(step for step, _, _ in rows))

    def resync_mlflow(self, run: RunRecord) -> None:
        """After a crash, trust what MLflow holds over what the store believed was sent."""
        assert run.mlflow_run_id is not None
        logged = self.tracker.metric_history(run.mlflow_run_id, "loss")
        if logged:
            self.store.mark_mlflow_synced(run.id, max(step for step, _ in logged))
        self.sync_mlflow(self.store.run(run.id))

    def end_mlflow_run(self, run: RunRecord) -> None:
        if run.mlflow_run_id is not None and run.state in MLFLOW_END_STATUS:
            self.tracker.end_run(run.mlflow_run_id, MLFLOW_END_STATUS[run.state])

    def shutdown(self) -> None:
        """On Ctrl-C: chunks in flight are lost and their workers stopped at once; their runs resume
        from the last recorded chunk."""
        self.flush_mlflow()
        abandoned = self.placement.in_flight()
        for run_id in abandoned:
            self.store.set_state(run_id, "ready", cause="interrupted", detail="rf run was stopped")
        self.placement.busy.clear()
        self.placement.saving.clear()
        self.pool.shutdown(timeout=0 if abandoned else 10.0)


def chunk_line(run: RunRecord, metrics: dict[str, float], done: ChunkDone) -> str:
    parts = [f"run {run.id}: chunk {done.chunk_index}/{done.total_chunks}", f"step {done.global_step}"]
    for key in ("loss", "eval_loss"):
        if key in metrics:
            parts.append(f"{key} {metrics[key]:.4f}")
    parts.append(f"{done.seconds:.1f} s")
    return " · ".join(parts)
