"""The search space as a sampler sees it: parameters named by their keys, configs from parameters
and back, a prior run's settings read into the space (no torch, no Optuna)."""

from __future__ import annotations

import math
from typing import Any

import pytest

from rfcli.search.space import Parameter, config_from_params, parameters, params_of, params_taken, space_size

SPACE: dict[str, Any] = {
    "training": {"learning_rate": {"loguniform": [1e-4, 1e-2]}, "max_steps": 32},
    "lora": {
        "grid": [
            {"r": 8, "lora_dropout": {"uniform": [0.0, 0.1]}},
            {"r": {"randint": [16, 64]}, "lora_dropout": 0.0},
        ]
    },
    "rewards": [{"function": "m:f", "weight": {"choice": [0.5, 1.0]}}],
}


def test_each_axis_is_a_parameter_named_by_its_key_options_included() -> None:
    assert [(p.name, p.marker) for p in parameters(SPACE)] == [
        ("training.learning_rate", "loguniform"),
        ("lora", "grid"),
        ("lora.grid[0].lora_dropout", "uniform"),
        ("lora.grid[1].r", "randint"),
        ("rewards[0].weight", "choice"),
    ]


def test_parameters_give_a_config_and_only_the_axes_of_the_options_taken() -> None:
    params = {
        "training.learning_rate": 0.0012345678,
        "lora": 1,
        "lora.grid[0].lora_dropout": 0.05,
        "lora.grid[1].r": 32,
        "rewards[0].weight": 1,
    }
    config = config_from_params(SPACE, params)
    assert config == {
        "training": {"learning_rate": 0.001235, "max_steps": 32},  # 4 significant digits, as random's
        "lora": {"r": 32, "lora_dropout": 0.0},
        "rewards": [{"function": "m:f", "weight": 1.0}],
    }
    taken = params_taken(SPACE, params)
    assert "lora.grid[0].lora_dropout" not in taken and taken["training.learning_rate"] == 0.001235
    assert params_of(SPACE, config) == taken  # and back


def test_an_axis_left_out_takes_its_lowest_value() -> None:
    config = config_from_params(SPACE, {})
    assert config["training"]["learning_rate"] == 1e-4
    assert config["lora"] == {"r": 8, "lora_dropout": 0.0}
    assert config["rewards"][0]["weight"] == 0.5


@pytest.mark.parametrize(
    ("parameter", "value", "kept"),
    [
        (Parameter("x", "uniform", 0.12341, 0.5), 0.123409, 0.12341),  # rounding down would leave the range
        (Parameter("x", "loguniform", 1e-4, 1e-2), 0.0099999, 0.01),
        (Parameter("x", "randint", 4, 64), 17, 17),
        (Parameter("x", "choice", options=3), 2, 2),
    ],
)
def test_a_sampled_value_is_kept_as_a_config_holds_it(
    parameter: Parameter, value: float, kept: float
) -> None:
    assert parameter.kept(value) == kept


def test_a_prior_run_is_read_into_the_space_or_refused() -> None:
    space = {"training": {"learning_rate": {"loguniform": [1e-4, 1e-2]}}, "lora": {"r": {"choice": [8, 16]}}}
    run = {"training": {"learning_rate": 3e-3, "max_steps": 64}, "lora": {"r": 16}, "name": "old"}
    assert params_of(space, run) == {"training.learning_rate": 3e-3, "lora.r": 1}  # other steps: fine
    assert params_of(space, {**run, "lora": {"r": 32}}) is None  # not an option
    assert params_of(space, {**run, "training": {"learning_rate": 0.5}}) is None  # outside the range
    assert params_of(space, {"lora": {"r": 8}}) is None  # no learning rate at all


def test_an_option_is_told_apart_by_everything_it_sets() -> None:
    assert (
        params_of(SPACE, {**config_from_params(SPACE, {"lora": 0}), "lora": {"r": 8, "lora_dropout": 0.2}})
        is None
    )
    found = params_of(SPACE, {**config_from_params(SPACE, {}), "lora": {"r": 8, "lora_dropout": 0.07}})
    assert found is not None and (found["lora"], found["lora.grid[0].lora_dropout"]) == (0, 0.07)


def test_space_size_counts_configs_and_a_float_range_is_endless() -> None:
    assert space_size({"a": {"choice": [1, 2, 3]}, "b": {"randint": [1, 4]}}) == 12
    assert space_size({"a": {"grid": [{"x": {"choice": [1, 2]}}, 5]}}) == 3
    assert space_size(SPACE) == math.inf
