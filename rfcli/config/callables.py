"""`module:function` references in a config: formatting functions, data builders, rewards."""

from __future__ import annotations

import importlib
import inspect
import os
import sys
import sysconfig
import traceback
from collections.abc import Callable
from typing import Any

from rfcli.config.errors import ConfigError, did_you_mean


def resolve_callable(spec: str, key: str) -> Callable[..., Any]:
    """Import `module:function`, looking in the current folder first, as `python -m` would."""
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise ConfigError(f"expected 'module:function', got '{spec}'", key=key)
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ConfigError(f"cannot import module '{module_name}': {error}", key=key) from error
    function = getattr(module, attribute, None)
    if function is None:
        names = [name for name, value in vars(module).items() if callable(value) and not name.startswith("_")]
        hint = did_you_mean(attribute, names)
        raise ConfigError(f"module '{module_name}' has no function '{attribute}'{hint}", key=key)
    if not callable(function):
        raise ConfigError(f"'{spec}' is not callable", key=key)
    return function  # type: ignore[no-any-return]


def check_reward_signature(function: Callable[..., Any], spec: str, key: str) -> None:
    """GRPO calls rewards with keywords prompts, completions, completion_ids, trainer_state and every
    data column, so a reward must take **kwargs for whatever it does not name."""
    if not takes_any_keyword(function):
        raise ConfigError(
            f"reward '{spec}' must accept TRL's keywords: define it as "
            "`def reward(completions, **kwargs) -> list[float]` (prompts, completion_ids, trainer_state "
            "and each data column arrive as keywords)",
            key=key,
        )


def call_user_function(
    function: Callable[..., Any],
    spec: str,
    key: str,
    args: tuple[Any, ...] = (),
    kwargs: dict[str, Any] | None = None,
    context: str = "",
) -> Any:
    """Call a function the config names; what it raises becomes a ConfigError naming the function,
    the exception and the user's own line where it was raised (not rf's internals), and `context`
    ('on row 3')."""
    kwargs = kwargs or {}
    try:
        inspect.signature(function).bind(*args, **kwargs)
    except TypeError as error:
        raise ConfigError(
            f"'{spec}' cannot take these arguments: {error}; it takes {inspect.signature(function)}", key=key
        ) from None
    try:
        return function(*args, **kwargs)
    except ConfigError:
        raise
    except Exception as error:
        where = user_frame(error)
        details = " ".join(part for part in (context, f"at {where}" if where else "") if part)
        raise ConfigError(
            f"'{spec}' raised {type(error).__name__}: {error}" + (f" ({details})" if details else ""), key=key
        ) from None


def user_frame(error: BaseException) -> str | None:
    """'file:line' of the innermost frame in the user's code: not rf's, not an installed library's."""
    rf_package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    installed = (sysconfig.get_path(name) for name in ("stdlib", "platstdlib", "purelib", "platlib"))
    library_roots = tuple(os.path.join(root, "") for root in (rf_package, *installed))
    for frame in reversed(traceback.extract_tb(error.__traceback__)):
        filename = os.path.abspath(frame.filename)
        if not filename.startswith(library_roots) and not frame.filename.startswith("<"):
            shown = os.path.relpath(filename) if filename.startswith(os.getcwd()) else filename
            return f"{shown}:{frame.lineno}"
    return None


def check_metric_signature(function: Callable[..., Any], spec: str, key: str) -> None:
    """Generation metrics are called with keywords prompts, completions, references and every data
    column, so a metric must take **kwargs for whatever it does not name."""
    if not takes_any_keyword(function):
        raise ConfigError(
            f"metric '{spec}' must accept keywords: define it as "
            "`def metric(completions, references, **kwargs) -> float` (prompts and each data column "
            "arrive as keywords too; a dict of floats logs one metric per key)",
            key=key,
        )


def takes_any_keyword(function: Callable[..., Any]) -> bool:
    return any(p.kind == p.VAR_KEYWORD for p in inspect.signature(function).parameters.values())
