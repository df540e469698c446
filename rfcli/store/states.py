"""A run's states and the moves between them: the one place that says which change is legal.

    pending -> running <-> ready          running | ready -> completed   running -> failed
    pending | ready | running -> stopped -> ready (resume)
    failed -> ready (retry)               any state but deleted -> deleted

Who makes each move:
1. the scheduler starts a chunk: pending or ready -> running;
2. a chunk is recorded: running -> ready, or -> completed after the last one; a run's error:
   running -> failed;
3. `rf run` restarts after a kill, or is interrupted: running -> ready (the chunk in flight is lost),
   or -> completed for a run whose last chunk is recorded; ready -> completed repairs a run that an
   older rf left ready after recording its last chunk;
4. stop: pending, ready or running -> stopped (running only when the `rf run` that trained it is
   gone: a live controller stops a run at its chunk boundary, when it is ready);
5. resume: stopped -> ready; retry: failed -> ready;
6. a warm clone starts from its parent's weights: pending -> ready;
7. delete: any state but deleted -> deleted. A deleted run stays deleted.
A run never moves to the state it is in.
"""

from __future__ import annotations

from enum import StrEnum


class RunState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    READY = "ready"
    COMPLETED = "completed"
    STOPPED = "stopped"
    FAILED = "failed"
    DELETED = "deleted"


_S = RunState
MOVES: dict[RunState, frozenset[RunState]] = {
    _S.PENDING: frozenset({_S.RUNNING, _S.READY, _S.STOPPED, _S.DELETED}),
    _S.RUNNING: frozenset({_S.READY, _S.COMPLETED, _S.FAILED, _S.STOPPED, _S.DELETED}),
    _S.READY: frozenset({_S.RUNNING, _S.COMPLETED, _S.STOPPED, _S.DELETED}),
    _S.STOPPED: frozenset({_S.READY, _S.DELETED}),
    _S.FAILED: frozenset({_S.READY, _S.DELETED}),
    _S.COMPLETED: frozenset({_S.DELETED}),
    _S.DELETED: frozenset(),
}


SCHEDULABLE = frozenset({_S.PENDING, _S.READY})
"""Waiting for the scheduler to give them their next chunk."""
UNFINISHED = frozenset({_S.PENDING, _S.READY, _S.RUNNING})
"""Still in the schedule: training a chunk or waiting for one. Policies judge only these."""
ENDED_EARLY = frozenset({_S.STOPPED, _S.FAILED, _S.DELETED})
"""Left the schedule before their last chunk: by a person, a policy or an error."""


class IllegalMove(ValueError):
    """A change of state the run's state machine does not allow; the message says which it does."""


def run_state(name: str) -> RunState:
    """The state named `name`; a ValueError naming every state for anything else."""
    try:
        return RunState(name)
    except ValueError:
        known = ", ".join(RunState)
        raise ValueError(f"unknown run state '{name}'; a run is one of: {known}") from None


def check_move(run_id: int, current: RunState, target: RunState) -> None:
    """Raise IllegalMove unless a run in `current` may move to `target`."""
    if target in MOVES[current]:
        return
    allowed = MOVES[current]
    onward = (
        f"from {current} a run moves only to {', '.join(sorted(allowed))}"
        if allowed
        else f"a {current} run stays {current}"
    )
    raise IllegalMove(f"run {run_id} cannot go from {current} to {target}: {onward}")
