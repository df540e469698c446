"""The search space as a sampler sees it: each axis of the file is one parameter, named by its key.

    training.learning_rate: {loguniform: [1e-4, 1e-2]}  -> 'training.learning_rate', a float (log scale)
    lora.r: {randint: [4, 64]}                          -> 'lora.r', an integer
    lora.lora_alpha: {choice: [8, 16, 32]}              -> 'lora.lora_alpha', the option's index: 0, 1, 2
    lora: {grid: [{r: 8, lora_dropout: {uniform: [0, 0.1]}}, {r: 32}]}
        -> 'lora' (0 or 1), and 'lora.grid[0].lora_dropout' only when option 0 is taken

A `grid` axis is a categorical like `choice`. An option's own axes are parameters only when that
option is taken (a conditional space). Sampled floats keep 4 significant digits, as random search's
do, so a proposal reads like a planned run; a proposal's parameters are the values its config holds.

Pure: no torch, no I/O; Optuna only inside `Parameter.distribution`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rfcli.config.errors import join_key
from rfcli.config.search import GRID, SIGNIFICANT_DIGITS, axis_marker

if TYPE_CHECKING:
    from optuna.distributions import BaseDistribution

CATEGORICAL = (GRID, "choice")
NUMERIC = ("uniform", "loguniform", "randint")


@dataclass(frozen=True)
class Parameter:
    """One axis of the space: a range of numbers, or the options of a categorical axis."""

    name: str
    marker: str
    low: float = 0.0
    high: float = 0.0
    options: int = 0
    """Categorical axes: how many options (the parameter is the index of the one taken)."""

    @property
    def categorical(self) -> bool:
        return self.marker in CATEGORICAL

    def distribution(self) -> BaseDistribution:
        """The Optuna distribution a sampler draws this parameter from."""
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        if self.categorical:
            return CategoricalDistribution(list(range(self.options)))
        if self.marker == "randint":
            return IntDistribution(int(self.low), int(self.high))
        return FloatDistribution(self.low, self.high, log=self.marker == "loguniform")

    def kept(self, value: Any) -> int | float:
        """A sampled value as a config holds it: an index or an integer as is, a float with 4
        significant digits, still inside the range."""
        if self.categorical or self.marker == "randint":
            return int(value)
        rounded = float(f"{float(value):.{SIGNIFICANT_DIGITS}g}")
        return min(max(rounded, self.low), self.high)

    def lowest(self) -> int | float:
        """The value that stands in for this parameter when none is given: the first option, the low end."""
        return 0 if self.categorical else self.kept(self.low)


Pick = Callable[[Parameter], Any]
"""Gives a parameter its value: a sampler's suggestion, a recorded proposal, a default."""


def parameter_at(node: Any, path: str) -> Parameter | None:
    """The parameter of the axis `node` (at dotted key `path`), or None when it is not an axis."""
    marker = axis_marker(node)
    if marker is None:
        return None
    if marker in CATEGORICAL:
        return Parameter(path, marker, options=len(node[marker]))
    low, high = node[marker]
    return Parameter(path, marker, low=float(low), high=float(high))


def concrete(node: Any, pick: Pick, path: str = "") -> Any:
    """The config `node` describes once every axis on the way has its value from `pick`, asked in
    file order and only for the axes of the options taken (a sampler's define-by-run order)."""
    parameter = parameter_at(node, path)
    if parameter is not None:
        value = parameter.kept(pick(parameter))
        if not parameter.categorical:
            return value
        option = join_key(join_key(path, parameter.marker), int(value))
        return concrete(node[parameter.marker][int(value)], pick, option)
    if isinstance(node, dict):
        return {key: concrete(value, pick, join_key(path, key)) for key, value in node.items()}
    if isinstance(node, list):
        return [concrete(item, pick, join_key(path, index)) for index, item in enumerate(node)]
    return node


def config_from_params(space: Any, params: dict[str, Any]) -> Any:
    """The config that `params` pick from the space; an axis they leave out takes its lowest value."""
    return concrete(space, lambda parameter: params.get(parameter.name, parameter.lowest()))


def params_taken(space: Any, params: dict[str, Any]) -> dict[str, Any]:
    """Of `params`, the ones the config they pick uses (an option not taken leaves its axes out)."""
    taken: dict[str, Any] = {}

    def pick(parameter: Parameter) -> Any:
        taken[parameter.name] = parameter.kept(params.get(parameter.name, parameter.lowest()))
        return taken[parameter.name]

    concrete(space, pick)
    return taken


def parameters(node: Any, path: str = "") -> list[Parameter]:
    """Every axis of the space, in file order, those inside options included."""
    parameter = parameter_at(node, path)
    if parameter is not None:
        found = [parameter]
        if parameter.categorical:
            for index, option in enumerate(node[parameter.marker]):
                found += parameters(option, join_key(join_key(path, parameter.marker), index))
        return found
    children = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    return [found for key, child in children for found in parameters(child, join_key(path, key))]


def space_size(node: Any) -> float:
    """How many distinct configs the space holds: infinite with a float range."""
    marker = axis_marker(node)
    if marker in CATEGORICAL:
        return sum(space_size(option) for option in node[marker])
    if marker == "randint":
        low, high = node[marker]
        return float(high - low + 1)
    if marker is not None:
        low, high = node[marker]
        return 1.0 if low == high else math.inf
    children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
    return math.prod(space_size(child) for child in children)


def params_of(space: Any, config: Any) -> dict[str, Any] | None:
    """The parameters that give `config` (a run of another experiment) in this space, or None when
    one of its values lies outside it. Settings that are no axis may differ (another length, say);
    inside a categorical option everything must match, since that is how the option is told apart."""
    params: dict[str, Any] = {}
    return params if _match(space, config, "", params, strict=False) else None


def _match(node: Any, value: Any, path: str, params: dict[str, Any], strict: bool) -> bool:
    parameter = parameter_at(node, path)
    if parameter is None:
        if not strict and not parameters(node):
            return True
        if isinstance(node, dict) and isinstance(value, dict):
            if strict and node.keys() != value.keys():
                return False
            return all(
                key in value and _match(child, value[key], join_key(path, key), params, strict)
                for key, child in node.items()
                if strict or parameters(child)
            )
        if isinstance(node, list) and isinstance(value, list) and len(node) == len(value):
            return all(
                _match(child, item, join_key(path, index), params, strict)
                for index, (child, item) in enumerate(zip(node, value, strict=True))
            )
        return strict and _same(node, value)
    if parameter.categorical:
        for index, option in enumerate(node[parameter.marker]):
            inner: dict[str, Any] = {}
            if _match(option, value, join_key(join_key(path, parameter.marker), index), inner, strict=True):
                params.update({parameter.name: index, **inner})
                return True
        return False
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if not number or not parameter.low <= value <= parameter.high:
        return False
    if parameter.marker == "randint" and not float(value).is_integer():
        return False
    params[parameter.name] = int(value) if parameter.marker == "randint" else float(value)
    return True


def _same(a: Any, b: Any) -> bool:
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
