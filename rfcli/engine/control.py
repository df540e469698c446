"""Commands that steer runs (stop, resume, delete, clone), as they are applied.

`rf ctl` and the live table's keys write commands into the store (`commands.py`); whoever holds the
experiment's lock applies them here. The controller of `rf run` does so between chunks: a command
for a run that is training waits until that run's chunk is recorded, any other takes effect at the
controller's next turn (a fraction of a second). With no `rf run` attached, `rf ctl` takes the lock
and applies them at once. What a command changes in MLflow follows from the store: applying it also
defers it to a controller in the same transaction, and the controller (this one, or the next `rf run`)
mirrors it and settles it (`engine/mlflow_mirror.py`), so a kill in between loses nothing of it.
Each applied command changes state through the store, which records the event and its cause; a
refused command says why.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

from rfcli.config.plan import config_fingerprint
from rfcli.engine.commands import VERBS, CommandRefused, final_refusal, state_refusal
from rfcli.store.checksums import DamagedCheckpoint, copy_checkpoint
from rfcli.store.database import CommandRecord, ExperimentStore, RunRecord
from rfcli.store.layout import ExperimentLayout, adapter_name
from rfcli.store.states import IllegalMove


class CommandApplier:
    def __init__(
        self,
        store: ExperimentStore,
        layout: ExperimentLayout,
        on_change: Callable[[RunRecord, str, str], None] | None,
    ) -> None:
        self.store = store
        self.layout = layout
        self.on_change = on_change
        """Called with (run, verb, cause) after a command changed a run, for what the controller
        holds of it (a worker's parked state); None without a controller."""

    def apply_pending(self, busy: Collection[int]) -> list[str]:
        """Apply every pending command whose run is not mid-chunk; one line per outcome.

        A command's changes to the store and its outcome commit in one transaction: a kill in
        between leaves it pending, with nothing of it applied, and it applies once on the next turn.
        Files follow the store: a warm clone's checkpoint is copied before (a leftover copy is
        replaced next time), a deleted run's checkpoints are removed after.
        """
        lines = []
        waiting: set[int] = set()
        for command in self.store.pending_commands():
            behind = command.run_id in waiting and command.verb != "clone"  # a run's states change in order
            if behind or (command.run_id in busy and self.waits_for_chunk(command)):
                waiting.add(command.run_id)
                continue
            try:
                with self.store.transaction():
                    line, made_run = self.apply(command)
                    self.store.finish_command(command.id, outcome="applied", made_run=made_run)
                    self.store.defer_to_controller(command.id)  # MLflow learns of it from the store
            except (CommandRefused, IllegalMove) as refusal:
                with self.store.transaction():
                    self.store.finish_command(command.id, outcome="refused", error=str(refusal))
                    self.store.add_event(
                        command.run_id if self.store.has_run(command.run_id) else None,
                        f"{command.verb} refused",
                        command.cause,
                        str(refusal),
                    )
                lines.append(f"{command.verb} run {command.run_id} refused: {refusal}")
            else:
                if command.verb == "delete":
                    shutil.rmtree(self.layout.run_folder(command.run_id), ignore_errors=True)
                if self.on_change is not None:
                    self.on_change(self.store.run(command.run_id), command.verb, command.cause)
                lines.append(line)
        return lines

    def waits_for_chunk(self, command: CommandRecord) -> bool:
        """A stop or delete takes effect at the run's chunk boundary, and a warm clone of a run with
        no finished chunk yet waits for the one in flight to give it weights."""
        if command.verb in ("stop", "delete"):
            return True
        warm_without_weights = command.verb == "clone" and bool(command.args.get("warm"))
        return warm_without_weights and self.store.run(command.run_id).checkpoint is None

    def apply(self, command: CommandRecord) -> tuple[str, int | None]:
        """What the command did, in one line, and the run it made (a clone's), if any."""
        try:
            run = self.store.run(command.run_id)
        except KeyError as missing:
            raise CommandRefused(str(missing).strip("'\"")) from None
        cause = command.cause
        refusal = final_refusal(command.verb, run, bool(command.args.get("warm")))
        refusal = refusal or state_refusal(command.verb, run.id, run.state)
        if refusal is not None:
            raise CommandRefused(refusal)
        if command.verb == "stop":
            self.store.set_state(run.id, "stopped", cause=cause, detail=f"after chunk {run.chunks_done}")
            return f"run {run.id}: stopped after chunk {run.chunks_done}", None
        if command.verb == "resume":
            self.store.set_state(run.id, "ready", cause=cause, detail="resumed")
            return f"run {run.id}: resumed", None
        if command.verb == "delete":
            self.store.set_state(run.id, "deleted", cause=cause)
            return f"run {run.id}: deleted, checkpoints removed", None
        if command.verb == "clone":
            return self.clone(run, command.args, cause)
        if command.verb == "retry":
            return self.retry(run, command.args, cause), None
        raise CommandRefused(f"unknown command '{command.verb}'; expected one of {', '.join(VERBS)}")

    def clone(self, parent: RunRecord, args: dict[str, Any], cause: str) -> tuple[str, int]:
        """A new run from the parent's config with the (already validated) overrides applied;
        warm, it starts from the parent's last recorded weights and step. Returns its line and id."""
        warm = bool(args.get("warm"))
        config: dict[str, Any] = args["config"]
        if warm and parent.checkpoint is None:
            raise CommandRefused(f"run {parent.id} has no finished chunk yet; a warm clone needs its weights")
        max_steps = int(config.get("training", {}).get("max_steps", -1))
        if warm and 0 < max_steps <= parent.global_step:
            raise CommandRefused(
                f"run {parent.id} is at step {parent.global_step} and the clone would stop at {max_steps}; "
                f"give training.max_steps above {parent.global_step} to train further"
            )
        run_id = self.store.next_run_id()  # only the lock's holder adds runs
        checkpoint = None
        if warm:
            assert parent.checkpoint is not None
            checkpoint = warm_start_checkpoint(Path(parent.checkpoint), parent.id, self.layout, run_id)
        overrides = " ".join(args.get("overrides", []))
        name = (
            f"{run_id} clone of {parent.id}"
            + (" (warm)" if warm else "")
            + (f" {overrides}" if overrides else "")
        )
        self.store.add_run(
            run_id,
            config,
            config_fingerprint(config),
            name=name,
            parent_id=parent.id,
            warm_start=warm,
            cause=cause,
        )
        if checkpoint is not None:
            self.store.record_chunk(
                run_id,
                chunks_done=parent.chunks_done,
                global_step=parent.global_step,
                checkpoint=str(checkpoint),
                metrics=[],
            )
            self.store.set_state(
                run_id, "ready", cause=cause, detail=f"from run {parent.id} at step {parent.global_step}"
            )
        line = f"run {run_id}: cloned from run {parent.id}" + (" with its current weights" if warm else "")
        return line, run_id

    def retry(self, run: RunRecord, args: dict[str, Any], cause: str) -> str:
        """A failed run trains again from its last recorded chunk, with the (already validated)
        config the retry gives it. Unchanged, it resumes exactly (optimizer and schedule included);
        changed, it starts a fresh optimizer and its own schedule from that step, as a warm clone
        does, since a resumed optimizer would bring back the old learning rate. The store says so
        (`fresh_optimizer_step`): the checkpoint it records is never changed, since a transaction
        cannot take a file change back."""
        config: dict[str, Any] = args["config"]
        if config != run.config:
            self.store.set_config(run.id, config, fresh_optimizer_step=run.global_step)
        self.store.forget_steps_after(run.id, run.global_step)
        overrides = " ".join(args.get("overrides", []))
        where = f"chunk {run.chunks_done} (step {run.global_step})"
        detail = f"retry from {where}" + (f" with {overrides}" if overrides else "")
        self.store.set_state(run.id, "ready", cause=cause, detail=detail)
        return f"run {run.id}: retries from {where}" + (f" with {overrides}" if overrides else "")


OPTIMIZER_FILES = ("optimizer.pt", "scheduler.pt")


def warm_start_checkpoint(source: Path, parent_id: int, layout: ExperimentLayout, run_id: int) -> Path:
    """A copy of the parent's checkpoint for the clone: its weights (the adapter renamed to the
    clone's), its step and RNG, but no optimizer or scheduler state, so the clone's own learning
    rate and schedule apply from that step on. A copy left by a clone whose store change did not
    commit is replaced; a damaged checkpoint refuses the clone, naming the file."""
    target = layout.checkpoints(run_id) / source.name
    try:
        copy_checkpoint(source, target, OPTIMIZER_FILES, (adapter_name(parent_id), adapter_name(run_id)))
    except DamagedCheckpoint as damaged:
        raise CommandRefused(f"run {parent_id}'s checkpoint: {damaged}") from None
    return target
