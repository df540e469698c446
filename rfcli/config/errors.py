"""Errors in an experiment file or override: each says where, what, and what would be right."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from rfcli.errors import UserError


class ConfigError(UserError):
    """A user's experiment file, override, or something they name is wrong."""

    def located(self, source: str) -> ConfigError:
        """The same error, naming the file it came from (when it did not already)."""
        return self if self.source else ConfigError(self.message, source=source, key=self.key)


def did_you_mean(word: str, choices: Iterable[str], cutoff: float = 0.6) -> str:
    """' (did you mean 'x'?)' for the closest choice, or '' when nothing is close (a similarity of
    `cutoff` or more, from 0 to 1)."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=cutoff)
    return f" (did you mean '{close[0]}'?)" if close else ""


def join_key(path: str, key: str | int) -> str:
    """Dotted key path as a user writes it in an override: 'lora.grid[1].r'."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


class ConfigErrors(ConfigError):
    """Every problem found in one experiment file, reported together: one line each."""

    def __init__(self, errors: list[ConfigError]) -> None:
        self.errors = errors
        super().__init__("; ".join(str(error) for error in errors))

    def __str__(self) -> str:
        return "\n".join(str(error) for error in self.errors)

    def lines(self) -> list[str]:
        return [str(error) for error in self.errors]

    def located(self, source: str) -> ConfigError:
        return ConfigErrors([error.located(source) for error in self.errors])


def raise_all(errors: Iterable[ConfigError]) -> None:
    """Raise the errors found, once each: the one error itself, or all of them together."""
    unique = list({str(part): part for error in errors for part in each_problem(error)}.values())
    if len(unique) == 1:
        raise unique[0]
    if unique:
        raise ConfigErrors(unique)


def each_problem(error: ConfigError) -> list[ConfigError]:
    """The problems an error holds: its own, or each of several reported together."""
    return error.errors if isinstance(error, ConfigErrors) else [error]
