"""A clone's config: its parent's, with overrides, checked like a plan."""

from __future__ import annotations

from typing import Any

from omegaconf import OmegaConf

from rfcli.config.errors import ConfigError, raise_all
from rfcli.config.hardware import shared_precision_errors
from rfcli.config.loader import apply_overrides
from rfcli.config.plan import PlannedRun, build_run_config
from rfcli.config.schema import ExperimentConfig
from rfcli.config.search import count_grid
from rfcli.config.typed import to_typed_config
from rfcli.gpus import machine_gpus


def shared_with(parent: dict[str, Any], clone: ExperimentConfig) -> list[PlannedRun]:
    """Parent and clone as the plan's checks see runs: a LoRA clone shares its parent's base model."""
    return [PlannedRun(0, to_typed_config(parent), parent), PlannedRun(1, clone, {})]


def clone_config(
    parent: dict[str, Any],
    parent_max_steps: int | None,
    overrides: list[str],
    warm_from_step: int | None = None,
    source: str = "clone",
) -> dict[str, Any]:
    """The parent's config with overrides applied, checked like a plan; it keeps the parent's
    max_steps unless told otherwise, so parent and clone train for as long. A warm clone starts at
    its parent's step `warm_from_step`, so its max_steps must lie beyond it. `source` names the
    command in error messages."""
    config = OmegaConf.create(parent)
    if parent_max_steps is not None and not any(o.startswith("training.max_steps=") for o in overrides):
        OmegaConf.update(config, "training.max_steps", parent_max_steps, force_add=True)
    resolved = OmegaConf.to_container(apply_overrides(config, overrides, source), resolve=True)
    assert isinstance(resolved, dict)
    merged = {str(key): value for key, value in resolved.items()}
    if count_grid(merged) != 1:
        raise ConfigError("a clone is one run: give plain values, not search axes", source=source)
    try:
        clone = build_run_config(merged)
        raise_all(shared_precision_errors(shared_with(parent, clone), machine_gpus()))
    except ConfigError as error:
        raise error.located(source) from None
    max_steps = merged.get("training", {}).get("max_steps", -1)
    if warm_from_step and 0 < max_steps <= warm_from_step:
        raise ConfigError(
            f"a warm clone goes on from its parent's step {warm_from_step}: max_steps must be above it, "
            f"got {max_steps}",
            source=source,
            key="training.max_steps",
        )
    return merged
