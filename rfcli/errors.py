"""The family of user errors: bad input that the command line prints as one line, exit status 2.

`main()` catches `UserError` and prints it without a traceback; each kind says what went wrong
in the user's words. `ConfigError` (in `rfcli.config.errors`) is the kind for an experiment file,
an override or what they name; `NotFoundError` for an experiment that does not exist;
`DamagedFileError` for a file of an experiment that rf cannot read.
"""

from __future__ import annotations


class UserError(Exception):
    """Something the user gave is wrong or cannot be used now; `source` and `key` say where."""

    def __init__(self, message: str, *, source: str | None = None, key: str | None = None) -> None:
        self.message = " ".join(message.split())  # one line, however the message was built
        self.source = source
        self.key = key
        super().__init__(str(self))

    def __str__(self) -> str:
        where = ": ".join(part for part in (self.source, self.key) if part)
        return f"{where}: {self.message}" if where else self.message

    def lines(self) -> list[str]:
        """What the command line prints: one line per problem."""
        return [str(self)]


class NotFoundError(UserError):
    """A named thing (an experiment, a run) does not exist; the message lists what does."""


class DamagedFileError(UserError):
    """A file rf keeps for an experiment (its state store, its MLflow store) is damaged or missing
    where it must be: the message names the file and what can be done. rf never replaces it with a
    fresh one, which would make finished runs read as never run."""

    def __init__(self, message: str, *, problem: str) -> None:
        super().__init__(message)
        self.problem = problem
        """The file and what is wrong with it, in a few words: 'state.db is empty (0 bytes)'."""
