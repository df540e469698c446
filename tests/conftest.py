"""Shared test setup."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

CPU_KERNELS = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "MKL_ENABLE_INSTRUCTIONS": "AVX2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
}
"""torch, MKL and oneDNN pick their kernels by the CPU they find, and an AVX-512 kernel sums in another
order than an AVX2 one: the pinned values (tests/pinned.py) and GRPO's sampled completions would then
depend on the machine the suite runs on. Every x86 machine we test on has AVX2, so the suite asks for
it; set before torch computes anything, and inherited by every CLI subprocess a test starts."""
for name, value in CPU_KERNELS.items():
    os.environ.setdefault(name, value)

from rfcli.gpus import driver_present  # noqa: E402


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The CUDA tier runs in the same suite where a GPU is present, and is skipped cleanly elsewhere."""
    if driver_present():
        import torch

        if torch.cuda.is_available():
            return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def rf_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Built-in models go to a fresh folder, built once per test session and never into ~/.cache/rf.
    Set in os.environ, so CLI subprocesses started by tests inherit it."""
    path = tmp_path_factory.mktemp("rf-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RF_CACHE_DIR", str(path))
        yield path


def interrupt_at_default() -> None:
    """A child's `preexec_fn` for tests that send it SIGINT: a shell without job control starts its
    background commands (`make test &`) with SIGINT ignored, and their children would inherit that,
    so Ctrl-C, as the test sends it, would reach a process that ignores it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
