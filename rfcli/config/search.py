"""The search space: explicit axis markers anywhere in a config, expanded into concrete configs.

An axis is a mapping with exactly one marker key, so a plain YAML list stays one value:

    learning_rate: {grid: [1e-3, 1e-4]}          # grid axis: every value is a run
    lora_dropout: {uniform: [0.0, 0.1]}          # random search only
    learning_rate: {loguniform: [1e-5, 1e-3]}
    r: {randint: [4, 32]}                        # both ends included
    target_modules: {choice: [[q_proj, v_proj], all-linear]}

Options of `grid` and `choice` may hold axes themselves (one LoRA setting with its own grid).
"""

from __future__ import annotations

import itertools
import json
import math
import random
from typing import Any

from rfcli.config.errors import ConfigError, did_you_mean, join_key

GRID = "grid"
DISTRIBUTIONS = ("choice", "uniform", "loguniform", "randint")
MARKERS = (GRID, *DISTRIBUTIONS)
SIGNIFICANT_DIGITS = 4
"""Sampled floats keep 4 significant digits: plans stay readable and ids stay short."""


def axis_marker(node: Any) -> str | None:
    """The marker name when `node` is a search axis, else None."""
    if isinstance(node, dict) and len(node) == 1:
        (key,) = node
        if key in MARKERS:
            return str(key)
    return None


def check_axes(node: Any, method: str, path: str = "") -> None:
    """Reject malformed axes and axes the search method cannot use, naming the key."""
    marker = axis_marker(node)
    if marker is None:
        check_marker_typo(node, path)
        check_marker_alone(node, path)
        children = (
            node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        )
        for key, child in children:
            check_axes(child, method, join_key(path, key))
        return
    values = node[marker]
    where = join_key(path, marker)
    if marker in (GRID, "choice"):
        if not isinstance(values, list) or not values:
            raise ConfigError(f"expected a non-empty list of values, got {values!r}", key=where)
        for index, option in enumerate(values):
            check_axes(option, method, join_key(where, index))
    else:
        _check_range(marker, values, where)
    if method == GRID and marker in DISTRIBUTIONS:
        raise ConfigError(
            f"'{marker}' is a random distribution; set search.method: random, or use {{grid: [...]}}",
            key=where,
        )


MARKER_TYPO_SIMILARITY = 0.7
"""How close to a marker a key must be to read as its typo: 'gird' (0.75 to grid) is, the setting
'train' (0.67 to randint) is not."""


def check_marker_typo(node: Any, path: str) -> None:
    """`{gird: [...]}` is meant as an axis, not as a mapping value with a key 'gird'."""
    if isinstance(node, dict) and len(node) == 1:
        ((key, values),) = node.items()
        hint = did_you_mean(str(key), MARKERS, cutoff=MARKER_TYPO_SIMILARITY)
        if hint and isinstance(values, list):
            raise ConfigError(
                f"'{key}' is not a search marker{hint}; markers are {', '.join(MARKERS)}",
                key=join_key(path, key),
            )


WHOLE_ALTERNATIVES = "README: 'Whole alternative configurations'"


def check_marker_alone(node: Any, path: str) -> None:
    """A marker beside other keys (`lora: {grid: [...], r: 8}`, or a top-level `grid:` beside the
    sections) is no axis: an axis is a mapping whose only key is its marker. Inside `kwargs`, which
    go to a user's own function, any key is the user's."""
    if not isinstance(node, dict) or len(node) < 2 or path.rpartition(".")[2] == "kwargs":
        return
    marker = next((str(key) for key in node if key in MARKERS), None)
    if marker is None:
        return
    if path:
        fix = f"make {path} itself the axis: {path}: {{{marker}: [{{...}}, {{...}}]}}, each option whole"
    else:
        fix = f"write the whole file as {{{marker}: [config A, config B]}}, each option a whole config"
    raise ConfigError(
        f"'{marker}' beside other keys is not a search axis (an axis is a mapping whose only key is its "
        f"marker); to try alternatives that differ in several settings, {fix} ({WHOLE_ALTERNATIVES})",
        key=join_key(path, marker),
    )


def _check_range(marker: str, values: Any, where: str) -> None:
    numeric = isinstance(values, list) and len(values) == 2
    numeric = numeric and all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
    if not numeric or values[0] > values[1]:
        raise ConfigError(f"expected [low, high] with low <= high, got {values!r}", key=where)
    if marker == "loguniform" and values[0] <= 0:
        raise ConfigError(f"expected low > 0 for a log-uniform range, got {values!r}", key=where)
    if marker == "randint" and not all(isinstance(v, int) for v in values):
        raise ConfigError(f"expected two integers, got {values!r}", key=where)


COUNT_CAP = 10**18
"""Counts stop growing here: a hostile file's product of axes could have thousands of digits."""


def count_grid(node: Any) -> int:
    """How many concrete values `grid_configs(node)` gives, counted without making them (at most
    `COUNT_CAP + 1`): an axis adds its options' counts, a mapping or list multiplies its parts'."""
    marker = axis_marker(node)
    if marker is not None:
        return min(COUNT_CAP + 1, sum(count_grid(option) for option in node[marker]))
    parts = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
    count = 1
    for part in parts:
        count = min(COUNT_CAP + 1, count * count_grid(part))
    return count


def grid_configs(node: Any) -> list[Any]:
    """Every concrete value of `node`: the cartesian product of its grid axes, in file order."""
    marker = axis_marker(node)
    if marker is not None:
        return [value for option in node[marker] for value in grid_configs(option)]
    if isinstance(node, dict):
        keys = list(node)
        products = itertools.product(*(grid_configs(node[key]) for key in keys))
        return [dict(zip(keys, values, strict=True)) for values in products]
    if isinstance(node, list):
        return [list(values) for values in itertools.product(*(grid_configs(item) for item in node))]
    return [node]


def sample_config(node: Any, rng: random.Random) -> Any:
    """One random draw of `node`; grid axes are drawn uniformly like `choice`."""
    marker = axis_marker(node)
    if marker in (GRID, "choice"):
        return sample_config(rng.choice(node[marker]), rng)
    if marker is not None:
        low, high = node[marker]
        if marker == "randint":
            return rng.randint(low, high)
        if marker == "uniform":
            return _round(rng.uniform(low, high))
        return _round(math.exp(rng.uniform(math.log(low), math.log(high))))
    if isinstance(node, dict):
        return {key: sample_config(value, rng) for key, value in node.items()}
    if isinstance(node, list):
        return [sample_config(item, rng) for item in node]
    return node


def random_configs(node: Any, num_samples: int, seed: int) -> list[Any]:
    """`num_samples` distinct draws, the same for the same seed."""
    rng = random.Random(seed)
    seen: set[str] = set()
    drawn: list[Any] = []
    for _ in range(num_samples * 100):
        config = sample_config(node, rng)
        fingerprint = json.dumps(config, sort_keys=True)
        if fingerprint not in seen:
            seen.add(fingerprint)
            drawn.append(config)
            if len(drawn) == num_samples:
                return drawn
    raise ConfigError(
        f"asked for {num_samples} distinct samples but the search space gave only {len(drawn)}; "
        "lower num_samples or widen the space",
        key="search.num_samples",
    )


def _round(value: float) -> float:
    return float(f"{value:.{SIGNIFICANT_DIGITS}g}")
