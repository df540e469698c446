"""Absolute per-step values of one tiny SFT, DPO and GRPO run, pinned as torchtune's recipe tests pin
theirs: every other equality test compares rf with rf, so a library upgrade or a bug that shifts
every run alike passes them and fails here.

Refresh them on purpose (after an upgrade you have checked), with the same tests:

    RF_REFRESH_PINNED=1 .venv/bin/python -m pytest tests/e2e -k pinned

`pinned_values.json` keeps, with the values, the library versions they were pinned with.
"""

from __future__ import annotations

import json
import math
import os
from importlib.metadata import version
from pathlib import Path

PINNED = Path(__file__).with_name("pinned_values.json")
REFRESH = "RF_REFRESH_PINNED"
LIBRARIES = ("torch", "transformers", "trl", "peft", "datasets", "accelerate")
REL_TOL = 1e-4
ABS_TOL = 1e-7
"""Losses near zero (GRPO's) compare by this much at most."""


def versions() -> dict[str, str]:
    return {name: version(name) for name in LIBRARIES}


def check_pinned(name: str, series: dict[int, float]) -> None:
    """`series` ({step: value}) must equal what is pinned under `name`; with RF_REFRESH_PINNED=1 it is
    pinned instead."""
    pinned = json.loads(PINNED.read_text(encoding="utf-8")) if PINNED.exists() else {}
    if os.environ.get(REFRESH) == "1":
        pinned[name] = {
            "versions": versions(),
            "values": {str(step): series[step] for step in sorted(series)},
        }
        PINNED.write_text(json.dumps(pinned, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        return
    assert name in pinned, f"nothing pinned for {name}; pin it with {REFRESH}=1 (see tests/pinned.py)"
    expected = {int(step): value for step, value in pinned[name]["values"].items()}
    upgraded = {
        library: f"{was} -> {now}"
        for library, was in pinned[name]["versions"].items()
        if (now := versions().get(library)) != was
    }
    context = f"{name} (pinned with other libraries: {upgraded})" if upgraded else name
    assert series.keys() == expected.keys(), (
        f"{context}: logged steps {sorted(series)}, pinned {sorted(expected)}"
    )
    for step, value in expected.items():
        assert math.isclose(series[step], value, rel_tol=REL_TOL, abs_tol=ABS_TOL), (
            f"{context}: step {step}: {series[step]!r}, pinned {value!r}; if a checked upgrade moved it, "
            f"refresh with {REFRESH}=1 (see tests/pinned.py)"
        )
