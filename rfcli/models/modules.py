"""A model's modules, built from its config without weights, to check LoRA's `target_modules`:
PEFT quietly ignores the names that match nothing as long as one matches, and fails inside a
worker on a match it cannot adapt (a norm layer)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import PretrainedConfig

ADAPTABLE = ("Linear", "Embedding", "Conv1d", "Conv2d", "Conv3d", "Conv1D", "MultiheadAttention")
"""The layer classes PEFT's LoRA adapts."""


def module_names(config: PretrainedConfig) -> dict[str, bool]:
    """Each module's dotted name, and whether LoRA can adapt it; built on the meta device (no
    weights, no memory)."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return {name: type(module).__name__ in ADAPTABLE for name, module in model.named_modules() if name}


def matches(target: str, name: str, as_regex: bool) -> bool:
    """PEFT's rule: a string target is a regular expression over full names; a list item matches a
    name's last part(s)."""
    return bool(re.fullmatch(target, name)) if as_regex else name == target or name.endswith(f".{target}")


def target_problems(targets: str | list[str], modules: dict[str, bool]) -> list[tuple[str, str]]:
    """(target, what is wrong with it): it matches nothing, or a layer LoRA cannot adapt."""
    if targets == "all-linear":
        return []
    as_regex = isinstance(targets, str)
    problems = []
    for target in [targets] if isinstance(targets, str) else targets:
        matched = [name for name in modules if matches(target, name, as_regex)]
        unadaptable = [name for name in matched if not modules[name]]
        if not matched:
            problems.append((target, f"'{target}' matches no module of the model"))
        elif unadaptable:
            problems.append((target, f"'{target}' matches {unadaptable[0]}, a layer LoRA cannot adapt"))
    return problems
