"""The loop of `rf run`: give free workers the runs furthest behind, record what comes back.

The store is the truth: a chunk counts as done only once its checkpoint is on disk and the store
says so, and MLflow mirrors the store's metrics from the last step it already holds. So a killed
`rf run` resumes every run from its last recorded chunk and logs no metric step twice.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from rfcli.engine.control import CommandApplier
from rfcli.engine.faults import machine_fault
from rfcli.engine.judging import Judge
from rfcli.engine.learning_signal import WARNING, missing_signal
from rfcli.engine.messages import (
    ChunkDone,
    ChunkFailed,
    ChunkProgress,
    ChunkTrained,
    MetricRow,
    ReleaseRun,
    TrainChunk,
    WorkerNotice,
    WorkerReply,
)
from rfcli.engine.mlflow_mirror import MlflowMirror
from rfcli.engine.pool import Pool
from rfcli.engine.progress import LiveProgress
from rfcli.engine.refill import Refill
from rfcli.engine.scheduler import RunProgress, next_assignments
from rfcli.store.database import CHUNK_KEY, ExperimentStore, RunRecord
from rfcli.store.layout import ExperimentLayout, stale_checkpoints
from rfcli.store.states import SCHEDULABLE, RunState
from rfcli.tracking.mlflow_tracker import MlflowTracker
from rfcli.trainers.reference_metrics import scored_in_chunk


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
        self.mlflow = MlflowMirror(store, tracker)
        self.leaving = False
        """Set when the person leaves the view: chunks in flight finish, nothing new starts."""
        self.paused: str | None = None
        """What the machine lacks (a full disk), once it failed a chunk: as when leaving, chunks in
        flight finish and nothing new starts; the next `rf run` continues."""
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
        """Train until no run can make progress; `refresh` redraws the view between replies. A failure
        of the machine under the store or MLflow (a full disk) pauses: `paused` says what it lacks."""
        try:
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
        except Exception as error:
            self.paused = machine_fault(error, self.layout.folder)
            if self.paused is None:
                raise

    def steer_and_dispatch(self) -> None:
        for line in self.commands.apply_pending(busy=self.placement.in_flight()):
            self.announce(line)
        self.mlflow.mirror_deferred()
        if not self.stopping:
            for line in self.refill.fill_free_slots():  # a slot freed by a stop, a failure, an end
                self.announce(line)
            self.dispatch()

    @property
    def stopping(self) -> bool:
        """Nothing new starts: the person left the view, or the machine paused the experiment."""
        return self.leaving or self.paused is not None

    def busy_or_schedulable(self) -> bool:
        """A chunk in flight, or a run the scheduler would give a worker: the same test as its own,
        so a run it skips never keeps the loop turning."""
        if self.stopping:
            return bool(self.placement.in_flight())
        waiting = any(run.schedulable and not run.finished for run in self.run_progress(self.store.runs()))
        return bool(self.placement.in_flight()) or waiting

    def after_command(self, run: RunRecord, verb: str, cause: str) -> None:
        if verb in ("stop", "delete"):
            # A stopped run gives its worker back the memory it held (adapter, optimizer, trainer):
            # a policy stops most runs, and on a shared model each parked adapter also slows every
            # step of the others. Resumed, it is rebuilt from its checkpoint, like after a kill.
            parked = self.placement.parked.pop(run.id, None)
            if parked is not None:
                self.pool.send(parked[0], ReleaseRun(run.id))

    def recover(self) -> None:
        """Runs left 'running' by a killed `rf run` go back to their last recorded chunk, and a run
        whose last chunk is recorded completes (an older rf recorded the chunk and the state apart, and a
        kill between them left it ready); a deleted run's checkpoints, left by a kill between the delete
        and their removal, go."""
        self.mlflow.remove_orphans()
        for run, progress in zip(self.store.runs(), self.run_progress(self.store.runs()), strict=True):
            if run.state == "deleted":
                shutil.rmtree(self.layout.run_folder(run.id), ignore_errors=True)
            if run.state in (RunState.RUNNING, RunState.READY) and progress.finished:
                detail = f"its last chunk ({run.chunks_done}) was recorded before rf run stopped"
                self.store.set_state(run.id, "completed", cause="recovery", detail=detail)
                self.unsynced.add(run.id)  # its MLflow run ends too
                self.announce(f"run {run.id}: completed ({detail})")
            elif run.state == "running":
                self.store.set_state(run.id, "ready", cause="recovery", detail="rf run restarted")
                self.announce(f"run {run.id}: resumes from chunk {run.chunks_done} (step {run.global_step})")
            if run.mlflow_run_id is not None:
                self.mlflow.resync(run)

    def run_progress(self, runs: list[RunRecord]) -> list[RunProgress]:
        """What the scheduler knows of each run."""
        return [
            RunProgress(
                run_id=run.id,
                chunks_done=run.chunks_done,
                total_chunks=run.total_chunks,
                last_worker=self.placement.parked[run.id][0] if run.id in self.placement.parked else None,
                schedulable=run.state in SCHEDULABLE,
            )
            for run in runs
        ]

    def dispatch(self) -> None:
        runs = self.store.runs()
        free = [w.worker_id for w in self.pool.workers if w.worker_id not in self.placement.busy.values()]
        by_id = {run.id: run for run in runs}
        for assignment in next_assignments(self.run_progress(runs), free, set(self.placement.in_flight())):
            self.start_chunk(by_id[assignment.run_id], assignment.worker)

    def start_chunk(self, run: RunRecord, worker: int) -> None:
        parked = self.placement.parked.pop(run.id, None)
        if parked is not None and parked[0] != worker:
            self.pool.send(parked[0], ReleaseRun(run.id))
        if run.mlflow_run_id is None:
            self.unsynced.add(run.id)  # its MLflow run is made on the next flush, not on the way to a worker
        self.store.set_state(run.id, "running", cause="scheduler", detail=f"worker {worker}", worker=worker)
        self.placement.busy[run.id] = worker
        order = TrainChunk(run.id, run.config, run.checkpoint, run.global_step, run.fresh_optimizer_step)
        self.pool.send(worker, order)

    def handle(self, reply: WorkerReply) -> None:
        if isinstance(reply, ChunkProgress):
            self.note_progress(reply)
            return
        if isinstance(reply, WorkerNotice):
            self.store.add_event(reply.run_id, "notice", cause=f"worker {reply.worker}", detail=reply.text)
            self.announce(reply.text)
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
        if isinstance(reply, ChunkFailed) and reply.fault is not None:
            self.pause(reply.run_id, reply.fault, reply.error)
            return
        if isinstance(reply, ChunkFailed):
            self.fail(reply.run_id, reply.error, reply.metrics)
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
        if done.park_seconds or done.unpark_seconds:  # a full fine-tune parked off a GPU
            timing += [
                (done.global_step, "rf/park_seconds", done.park_seconds),
                (done.global_step, "rf/unpark_seconds", done.unpark_seconds),
            ]
        # One transaction: a kill between the chunk's record and the run's new state would leave a
        # run with every chunk done that is not completed.
        with self.store.transaction():
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
        self.warn_without_signal(run, done)
        self.decide()

    def warn_without_signal(self, run: RunRecord, done: ChunkDone) -> None:
        """A run that learns nothing looks like a success: the first chunk that shows it gets a
        warning event (see `learning_signal`), once per run."""
        warning = missing_signal(str(run.config.get("trainer", "sft")), done.chunk_index, done.metrics)
        if warning is None or self.store.events(limit=1, run_id=run.id, kind=WARNING):
            return
        self.store.add_event(run.id, WARNING, cause="rf run", detail=warning)
        self.announce(f"run {run.id}: warning: {warning}")

    def decide(self) -> None:
        """The policy's decisions go into the store with their commands, applied before the next dispatch."""
        for line in self.judge.after_chunk():
            self.announce(line)

    def remove_stale_checkpoints(self, run_id: int, recorded: Path) -> None:
        """Only now that the store points to `recorded`: older checkpoints are never needed again."""
        folder = self.layout.checkpoints(run_id)
        for stale in stale_checkpoints(folder.iterdir() if folder.is_dir() else [], recorded):
            shutil.rmtree(stale, ignore_errors=True)

    def fail(self, run_id: int, error: str, metrics: list[MetricRow] | None = None) -> None:
        """The run failed: the steps it took before it did (`metrics`) and its state, in one transaction."""
        self.placement.parked.pop(run_id, None)
        self.progress.chunk_ended(run_id)
        with self.store.transaction():
            if metrics:
                self.store.add_metrics(run_id, metrics)
            self.store.set_state(run_id, "failed", cause="error", error=error)
        self.unsynced.add(run_id)
        self.mlflow.fail(self.store.run(run_id), error)
        self.announce(f"run {run_id}: failed: {error}")

    def pause(self, run_id: int, fault: str, error: str) -> None:
        """The machine failed the run's chunk (a full disk): the run goes back to its last recorded
        chunk, not failed, and the experiment pauses once the chunks in flight end."""
        self.placement.parked.pop(run_id, None)
        self.progress.chunk_ended(run_id)
        self.store.set_state(run_id, "ready", cause="machine", detail=error)
        if self.paused is None:
            self.paused = fault
            self.store.add_event(None, "paused", cause="machine", detail=fault)
        self.announce(f"run {run_id}: {fault}; it trains this chunk again when rf run continues")

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

    def flush_mlflow(self) -> None:
        """Send recorded metrics to MLflow, and end the MLflow runs of runs that finished."""
        while self.unsynced:
            self.mlflow.flush(self.unsynced.pop())

    def shutdown(self, interrupted: bool = False) -> None:
        """On Ctrl-C: chunks in flight are lost and their workers stopped at once; their runs resume
        from the last recorded chunk. On a full disk, what cannot be written now the next `rf run`
        recovers (it puts runs left running back to their last recorded chunk, and resyncs MLflow).
        MLflow gets what the store recorded unless that means waiting for its store to open (after
        Ctrl-C during start-up): the next `rf run` sends it then."""
        abandoned = self.placement.in_flight()
        try:
            if not interrupted or self.tracker.is_open:
                self.flush_mlflow()
            for run_id in abandoned:
                self.store.set_state(run_id, "ready", cause="interrupted", detail="rf run was stopped")
        except Exception as error:
            if machine_fault(error) is None:
                raise
        finally:
            self.placement.busy.clear()
            self.placement.saving.clear()
            self.pool.shutdown(timeout=0 if abandoned else 10.0)


def chunk_line(run: RunRecord, metrics: dict[str, float], done: ChunkDone) -> str:
    parts = [f"run {run.id}: chunk {done.chunk_index}/{done.total_chunks}", f"step {done.global_step}"]
    for key in ("loss", "eval_loss"):
        if key in metrics:
            parts.append(f"{key} {metrics[key]:.4f}")
    reference = scored_in_chunk(done.metrics)
    if reference is not None:
        parts.append(reference)
    parts.append(f"{done.seconds:.1f} s")
    return " · ".join(parts)
