"""The CUDA tier: what only a GPU can show (parking, CUDA RNG, device memory, one GPU per worker).
Every test here is marked `gpu` and skipped where torch sees no CUDA device (see tests/conftest.py)."""

from __future__ import annotations

import os

# Set before CUDA makes its first cuBLAS handle, as a worker does: `full_determinism` needs it.
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
