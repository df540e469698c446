"""A model's module names, read from its config without loading weights, to check LoRA's
`target_modules`: PEFT quietly ignores the names that match nothing as long as one matches."""

from __future__ import annotations

import re
from pathlib import Path


def module_names(folder: Path) -> tuple[list[str], list[str]]:
    """Every module's dotted name, and the distinct last names of its linear layers, built on the
    meta device (no weights, no memory) from the config in `folder`."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(folder)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    modules = dict(model.named_modules())
    linear = {
        name.rsplit(".", 1)[-1] for name, module in modules.items() if isinstance(module, torch.nn.Linear)
    }
    return [name for name in modules if name], sorted(linear)


def missing_targets(targets: str | list[str], names: list[str]) -> list[str]:
    """The targets that match no module, as PEFT matches them: a string is a regular expression
    over the full names (or 'all-linear'); a list item is a name's last part(s)."""
    if isinstance(targets, str):
        if targets == "all-linear" or any(re.fullmatch(targets, name) for name in names):
            return []
        return [targets]
    return [target for target in targets if not any(n == target or n.endswith(f".{target}") for n in names)]
