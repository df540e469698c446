"""The run state machine: every move between two states, legal or not, checked one by one."""

from __future__ import annotations

import itertools

import pytest

from rfcli.store.states import IllegalMove, RunState, check_move, run_state

# Written out again here, not read from MOVES, so a changed move fails a test.
LEGAL = {
    ("pending", "running"),  # the scheduler starts its first chunk
    ("pending", "ready"),  # a warm clone starts from its parent's weights
    ("pending", "stopped"),
    ("pending", "deleted"),
    ("running", "ready"),  # a chunk recorded; or rf run restarted / interrupted
    ("running", "completed"),
    ("running", "failed"),
    ("running", "stopped"),  # rf ctl, after the rf run that trained it was killed
    ("running", "deleted"),
    ("ready", "running"),
    ("ready", "completed"),  # recovery: its last chunk was recorded, its state was not
    ("ready", "stopped"),
    ("ready", "deleted"),
    ("stopped", "ready"),  # resume
    ("stopped", "deleted"),
    ("failed", "ready"),  # retry
    ("failed", "deleted"),
    ("completed", "deleted"),
}
PAIRS = list(itertools.product([state.value for state in RunState], repeat=2))


@pytest.mark.parametrize(("current", "target"), sorted(LEGAL))
def test_legal_move(current: str, target: str) -> None:
    check_move(1, RunState(current), RunState(target))


@pytest.mark.parametrize(("current", "target"), [pair for pair in PAIRS if pair not in LEGAL])
def test_illegal_move_is_refused_saying_what_is_allowed(current: str, target: str) -> None:
    with pytest.raises(IllegalMove) as refused:
        check_move(7, RunState(current), RunState(target))
    message = str(refused.value)
    assert message.startswith(f"run 7 cannot go from {current} to {target}: ")
    allowed = sorted(to for start, to in LEGAL if start == current)
    assert message.endswith(
        f"moves only to {', '.join(allowed)}" if allowed else "a deleted run stays deleted"
    )


def test_the_seven_states() -> None:
    assert [state.value for state in RunState] == [
        "pending",
        "running",
        "ready",
        "completed",
        "stopped",
        "failed",
        "deleted",
    ]


def test_an_unknown_state_names_the_known_ones() -> None:
    assert run_state("stopped") is RunState.STOPPED
    with pytest.raises(
        ValueError, match="unknown run state 'paused'; a run is one of: pending, running, ready"
    ):
        run_state("paused")
