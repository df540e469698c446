"""Giving a command: the one path by which `rf ctl` and the live table's keys steer a run.

A command that can never apply is refused when it is given, and nothing is queued:
1. a run id the experiment does not have (the message lists the ones it has);
2. any command for a deleted run, except a clone from its config (its weights are gone);
3. stop or resume of a run that has completed or failed; a retry of a run that has not failed;
4. any command behind a delete of the same run still waiting to apply, except a clone from its
   config;
5. a clone or retry whose overrides do not make a valid run (a `ConfigError`, as for a plan);
6. a command the run's state would refuse once the commands waiting before it have applied: a
   stop behind a stop, a resume of a run that is not stopped and has no stop waiting, a warm clone
   of a run that has no finished chunk and none in flight.
The run and the commands waiting are read, and the command queued, in one transaction, so of many
commands given at once each is judged behind those queued before it. Anything else goes into the
store, where the controller (or `rf ctl` itself when no `rf run` holds the experiment) applies it,
in the order given for each run (see `control.py`); `waiting_for` says what it waits for.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rfcli.store.database import CommandRecord, ExperimentStore, RecordNotFoundError, RunRecord
from rfcli.store.states import MOVES, RunState

VERBS = ("stop", "resume", "delete", "clone", "retry")


class CommandRefused(Exception):
    """The command cannot apply to the run as it is; the message says why."""


def final_refusal(verb: str, run: RunRecord, warm: bool = False) -> str | None:
    """Why `verb` can never apply to `run` because it ended for good (rules 2 and 3), or None."""
    if run.state == RunState.DELETED and (verb != "clone" or warm):
        what = "a warm clone needs its weights" if verb == "clone" else "it can no longer be steered"
        return f"run {run.id} is deleted; {what}"
    ended = run.state != RunState.STOPPED and RunState.STOPPED not in MOVES[run.state]  # completed, failed
    if verb in ("stop", "resume") and ended:
        return f"run {run.id} is {run.state}"
    if verb == "retry" and run.state != RunState.FAILED:
        return f"run {run.id} is {run.state}; only a failed run is retried"
    return None


def state_refusal(verb: str, run_id: int, state: RunState, queued: bool = False) -> str | None:
    """Why a stop or resume cannot apply to a run in `state` (rule 6); `queued`: the state is the
    one the commands waiting before it leave."""
    if verb == "stop" and state == RunState.STOPPED:
        return f"run {run_id} is already {'waiting to be stopped' if queued else 'stopped'}"
    if verb == "resume" and state != RunState.STOPPED:
        return f"run {run_id} is {state}; only a stopped run resumes"
    return None


def state_after(state: RunState, verbs: Sequence[str]) -> RunState:
    """The state a run in `state` is left in by these commands, applied in order: the state the
    next command for it will meet (a stop of a running run applies at its chunk's end)."""
    for verb in verbs:
        if verb == "stop" and RunState.STOPPED in MOVES[state]:
            state = RunState.STOPPED
        elif (verb, state) in (("resume", RunState.STOPPED), ("retry", RunState.FAILED)):
            state = RunState.READY
        elif verb == "delete":
            state = RunState.DELETED
    return state


def refusal(verb: str, run: RunRecord, warm: bool, pending: Sequence[CommandRecord]) -> str | None:
    """Why `verb` for `run` will be refused, behind the commands `pending` (rules 2, 3, 4 and 6)."""
    ahead = [command.verb for command in pending if command.run_id == run.id]
    state = state_after(run.state, ahead)
    if verb == "clone" and warm and run.checkpoint is None and state != RunState.RUNNING:
        return f"run {run.id} has no finished chunk yet; a warm clone needs its weights"
    return (
        final_refusal(verb, run, warm)
        or queued_refusal(verb, run.id, warm, pending)
        or state_refusal(verb, run.id, state, queued=bool(ahead))
    )


def waiting_for(run: RunRecord, command_id: int, pending: Sequence[CommandRecord]) -> str:
    """What a queued command waits for, in the words `rf ctl` prints."""
    ahead = [command for command in pending if command.run_id == run.id and command.id < command_id]
    if run.state == RunState.RUNNING:
        return f"`rf run` applies it when run {run.id}'s chunk in flight ends"
    if ahead:
        return f"it applies after the {len(ahead)} command(s) for run {run.id} given before it"
    return "`rf run` applies it at its next turn; `rf status` shows its outcome"


def queued_refusal(verb: str, run_id: int, warm: bool, pending: Sequence[CommandRecord]) -> str | None:
    """Why `verb` can never apply behind the commands still waiting (rule 4), or None."""
    if verb == "clone" and not warm:
        return None
    if any(command.run_id == run_id and command.verb == "delete" for command in pending):
        return f"run {run_id} is already waiting to be deleted"
    return None


def submit(
    store: ExperimentStore,
    verb: str,
    run_id: int,
    *,
    cause: str,
    overrides: Sequence[str] = (),
    warm: bool = False,
) -> int:
    """Check the command (the rules above) and queue it; returns its id. Raises CommandRefused,
    or ConfigError for a clone's or a retry's bad overrides."""
    if verb not in VERBS:
        raise CommandRefused(f"unknown command '{verb}'; expected one of {', '.join(VERBS)}")
    try:
        run = store.run(run_id)
    except RecordNotFoundError as missing:
        raise CommandRefused(str(missing)) from None
    check(verb, run, warm, store.pending_commands())  # at once, before overrides take seconds to check
    args: dict[str, Any] = {}
    if verb == "clone":
        from rfcli.config.clone import clone_config  # OmegaConf and the plan compiler: not for `rf --help`

        config = clone_config(run.config, run.max_steps, list(overrides), run.global_step if warm else None)
        args = {"config": config, "overrides": list(overrides), "warm": warm}
    if verb == "retry":  # a retry keeps its own length: the overrides decide it
        from rfcli.config.clone import clone_config

        config = clone_config(run.config, None, list(overrides), source="retry")
        args = {"config": config, "overrides": list(overrides)}
    return store.add_command(
        verb, run_id, args, cause=cause, check=lambda now, pending: check(verb, now, warm, pending)
    )


def check(verb: str, run: RunRecord, warm: bool, pending: Sequence[CommandRecord]) -> None:
    """Raise CommandRefused when `verb` will be refused behind `pending`."""
    reason = refusal(verb, run, warm, pending)
    if reason is not None:
        raise CommandRefused(reason)
