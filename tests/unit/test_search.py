"""The search space: axis markers at any depth, grid products, seeded random draws."""

from __future__ import annotations

import pytest

from rfcli.config.errors import ConfigError
from rfcli.config.search import axis_marker, check_axes, grid_configs, random_configs


def test_plain_list_is_one_value() -> None:
    space = {"lora": {"target_modules": ["q_proj", "v_proj"]}}
    assert grid_configs(space) == [space]


def test_grid_is_cartesian_product_in_file_order() -> None:
    space = {"lr": {"grid": [1, 2]}, "r": {"grid": ["a", "b", "c"]}}
    configs = grid_configs(space)
    assert [(c["lr"], c["r"]) for c in configs] == [
        (1, "a"),
        (1, "b"),
        (1, "c"),
        (2, "a"),
        (2, "b"),
        (2, "c"),
    ]


def test_nested_axis_inside_one_element_of_a_list_of_lora_settings() -> None:
    space = {
        "lora": {"grid": [{"r": 8, "alpha": {"grid": [16, 32]}}, {"r": 64, "alpha": 128}]},
        "lr": {"grid": [1, 2]},
    }
    configs = grid_configs(space)
    assert len(configs) == 6
    assert {(c["lora"]["r"], c["lora"]["alpha"]) for c in configs} == {(8, 16), (8, 32), (64, 128)}


def test_axis_inside_a_plain_list() -> None:
    space = {"rewards": [{"function": "m:f", "weight": {"grid": [0.5, 1.0]}}, {"function": "m:g"}]}
    configs = grid_configs(space)
    assert [c["rewards"][0]["weight"] for c in configs] == [0.5, 1.0]
    assert all(c["rewards"][1] == {"function": "m:g"} for c in configs)


def test_a_list_of_lists_as_grid_values() -> None:
    space = {"target_modules": {"grid": [["q_proj", "v_proj"], ["q_proj", "k_proj", "v_proj", "o_proj"]]}}
    assert [c["target_modules"] for c in grid_configs(space)] == space["target_modules"]["grid"]


def test_marker_needs_a_mapping_with_one_key() -> None:
    assert axis_marker({"grid": [1]}) == "grid"
    assert axis_marker({"grid": [1], "other": 2}) is None
    assert axis_marker(["grid"]) is None


def test_random_search_is_reproducible_and_without_duplicates() -> None:
    space = {
        "lr": {"loguniform": [1e-5, 1e-2]},
        "dropout": {"uniform": [0.0, 0.2]},
        "r": {"randint": [4, 64]},
        "sched": {"choice": ["linear", "cosine"]},
    }
    first = random_configs(space, 20, seed=7)
    assert first == random_configs(space, 20, seed=7)
    assert first != random_configs(space, 20, seed=8)
    assert len({repr(sorted(c.items())) for c in first}) == 20
    for config in first:
        assert 1e-5 <= config["lr"] <= 1e-2 and 0.0 <= config["dropout"] <= 0.2
        assert isinstance(config["r"], int) and 4 <= config["r"] <= 64


def test_random_search_refuses_more_samples_than_the_space_holds() -> None:
    with pytest.raises(ConfigError, match="only 2"):
        random_configs({"x": {"choice": [1, 2]}}, 3, seed=0)


@pytest.mark.parametrize(
    ("space", "method", "message"),
    [
        ({"lr": {"uniform": [1e-3, 1e-4]}}, "random", "low <= high"),
        ({"lr": {"loguniform": [0, 1]}}, "random", "low > 0"),
        ({"r": {"randint": [1.5, 4]}}, "random", "two integers"),
        ({"lr": {"grid": []}}, "grid", "non-empty list"),
        ({"lr": {"uniform": [0, 1]}}, "grid", "search.method: random"),
    ],
)
def test_malformed_axes_name_their_key(space: dict, method: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as raised:
        check_axes(space, method)
    assert str(raised.value.key).split(".")[0] in ("lr", "r")
