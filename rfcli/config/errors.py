"""The one error type for bad user input: it says where, what, and what would be right."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class ConfigError(Exception):
    """A user's experiment file or override is wrong; printed without a traceback."""

    def __init__(self, message: str, *, source: str | None = None, key: str | None = None) -> None:
        self.message = message
        self.source = source
        self.key = key
        super().__init__(str(self))

    def __str__(self) -> str:
        where = ": ".join(part for part in (self.source, self.key) if part)
        return f"{where}: {self.message}" if where else self.message

    def located(self, source: str) -> ConfigError:
        """The same error, naming the file it came from (when it did not already)."""
        return self if self.source else ConfigError(self.message, source=source, key=self.key)


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """' (did you mean 'x'?)' for the closest choice, or '' when nothing is close."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def join_key(path: str, key: str | int) -> str:
    """Dotted key path as a user writes it in an override: 'lora.grid[1].r'."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key
