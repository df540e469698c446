"""Shared unit-test setup."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from rfcli.config.plan import compile_plan

REPO_ROOT = Path(__file__).resolve().parents[2]


def run_killed_child(code: str, *args: str) -> None:
    """Run `code` in a Python child that must end by `kill -9` (its own, at the moment it tests)."""
    child = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr


@pytest.fixture(scope="session")
def run_config() -> dict[str, Any]:
    """A valid run config as the store holds it (the quickstart's first run), for clones to start from."""
    return compile_plan(Path("configs/quickstart.yaml"), []).runs[0].raw
