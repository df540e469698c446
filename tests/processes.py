"""Child Python processes for tests that kill one at the worst moment."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def run_until_killed(code: str, *args: str | Path) -> None:
    """Run `code` in a fresh interpreter from the repository root; it must end by `kill -9` of itself
    (the test fails with the child's output otherwise)."""
    child = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *map(str, args)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr


def python_path_with(folder: Path) -> str:
    """PYTHONPATH with `folder` first, keeping what it held: run from a worktree, it names the rf
    under test, which the shared virtualenv's editable install does not."""
    return os.pathsep.join(part for part in (str(folder), os.environ.get("PYTHONPATH", "")) if part)
