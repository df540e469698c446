"""What sets runs apart: the settings whose values differ between them, as short readable text.

Shared by the plan table, the live table, `rf compare` and the report's labels, so a run is named
by the same settings everywhere.
"""

from __future__ import annotations

import json
from typing import Any


def format_value(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


def counted(number: int, noun: str) -> str:
    """'1 run', '4 runs', '1,024 training steps': a count with its noun, singular for one."""
    return f"{number:,} {noun}" if number == 1 else f"{number:,} {noun}s"


def differing_settings(configs: dict[int, dict[str, Any]]) -> dict[int, dict[str, str]]:
    """{run id: {dotted key: value}} for the keys whose values differ between these runs' configs."""
    from rfcli.config.plan import flatten, varying_keys  # OmegaConf: not for `rf --help`

    flats = {run_id: flatten(config) for run_id, config in configs.items()}
    keys = varying_keys(list(flats.values()))
    return {run_id: {key: format_value(flat.get(key)) for key in keys} for run_id, flat in flats.items()}


SHORT_NAMES = {
    "learning_rate": "lr",
    "lora_alpha": "alpha",
    "lora_dropout": "dropout",
    "per_device_train_batch_size": "batch",
    "gradient_accumulation_steps": "grad_accum",
    "num_train_epochs": "epochs",
    "target_modules": "modules",
}
"""The usual short forms of long TRL and PEFT field names, so the live table fits 80 columns."""


def short_keys(keys: list[str]) -> dict[str, str]:
    """Each dotted key's last part in its short form ('training.learning_rate' -> 'lr'), or the
    whole key where two keys would share a last part."""
    last = [key.rsplit(".", 1)[-1] for key in keys]
    return {
        key: SHORT_NAMES.get(short, short) if last.count(short) == 1 else key
        for key, short in zip(keys, last, strict=True)
    }


def settings_label(settings: dict[str, str]) -> str:
    """'r=8 lr=0.003': what sets a run apart, for legends and one-line mentions (a setting the run
    does not have, such as LoRA's rank in a full fine-tune, is left out)."""
    names = short_keys(list(settings))
    return " ".join(f"{names[key]}={value}" for key, value in settings.items() if value != format_value(None))
