"""Giving a command: the one path by which `rf ctl` and the live table's keys steer a run.

A command that can never apply is refused when it is given, and nothing is queued:
1. a run id the experiment does not have (the message lists the ones it has);
2. any command for a deleted run, except a clone from its config (its weights are gone);
3. stop or resume of a run that has completed or failed; a retry of a run that has not failed;
4. any command behind a delete of the same run still waiting to apply, except a clone from its
   config;
5. a clone or retry whose overrides do not make a valid run (a `ConfigError`, as for a plan).
Anything else goes into the store, where the controller (or `rf ctl` itself when no `rf run`
holds the experiment) applies it; see `control.py`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rfcli.store.database import CommandRecord, ExperimentStore, RecordNotFoundError, RunRecord

VERBS = ("stop", "resume", "delete", "clone", "retry")


class CommandRefused(Exception):
    """The command cannot apply to the run as it is; the message says why."""


def final_refusal(verb: str, run: RunRecord, warm: bool = False) -> str | None:
    """Why `verb` can never apply to `run` because it ended for good (rules 2 and 3), or None."""
    if run.state == "deleted" and (verb != "clone" or warm):
        what = "a warm clone needs its weights" if verb == "clone" else "it can no longer be steered"
        return f"run {run.id} is deleted; {what}"
    if run.state in ("completed", "failed") and verb in ("stop", "resume"):
        return f"run {run.id} is {run.state}"
    if verb == "retry" and run.state != "failed":
        return f"run {run.id} is {run.state}; only a failed run is retried"
    return None


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
    refusal = final_refusal(verb, run, warm) or queued_refusal(verb, run_id, warm, store.pending_commands())
    if refusal is not None:
        raise CommandRefused(refusal)
    args: dict[str, Any] = {}
    if verb == "clone":
        from rfcli.config.clone import clone_config  # OmegaConf and the plan compiler: not for `rf --help`

        config = clone_config(run.config, run.max_steps, list(overrides), run.global_step if warm else None)
        args = {"config": config, "overrides": list(overrides), "warm": warm}
    if verb == "retry":  # a retry keeps its own length: the overrides decide it
        from rfcli.config.clone import clone_config

        config = clone_config(run.config, None, list(overrides), source="retry")
        args = {"config": config, "overrides": list(overrides)}
    return store.add_command(verb, run_id, args, cause=cause)
