"""Shared unit-test setup."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from rfcli.config.plan import compile_plan


@pytest.fixture(scope="session")
def run_config() -> dict[str, Any]:
    """A valid run config as the store holds it (the quickstart's first run), for clones to start from."""
    return compile_plan(Path("configs/quickstart.yaml"), []).runs[0].raw
