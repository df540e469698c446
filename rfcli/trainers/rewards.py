"""GRPO reward functions as the config names them, checked where TRL would fail obscurely: what a
reward raises names the user's line, and a reward must answer one number (or None) per completion."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from rfcli.config.callables import call_user_function, resolve_callable
from rfcli.config.errors import ConfigError


def check_reward_values(values: Any, count: int, spec: str, key: str) -> None:
    numbers = isinstance(values, list) and all(
        value is None or (isinstance(value, int | float) and not isinstance(value, bool)) for value in values
    )
    if not numbers or len(values) != count:
        got = f"a list of {len(values)}" if isinstance(values, list) else f"a {type(values).__name__}"
        raise ConfigError(
            f"'{spec}' returned {got} ({values!r:.60}) for {count} completions; a reward returns a list "
            "with one float (or None) per completion",
            key=key,
        )


def reward_function(spec: str, key: str) -> Callable[..., list[float | None]]:
    """The named reward, wrapped so that its mistakes say what and where; TRL logs it by `__name__`."""
    function = resolve_callable(spec, key)

    @functools.wraps(function)
    def checked(*args: Any, **kwargs: Any) -> list[float | None]:
        values = call_user_function(function, spec, key, args, kwargs)
        check_reward_values(values, len(kwargs["completions"]), spec, key)  # TRL always passes them
        return values  # type: ignore[no-any-return]

    return checked
