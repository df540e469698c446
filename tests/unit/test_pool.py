"""How many workers start, decided without importing torch where no GPU driver is present."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from rfcli.engine.pool import GPU_DEVICE_FILES


@pytest.mark.skipif(any(map(os.path.exists, GPU_DEVICE_FILES)), reason="a GPU driver is present")
def test_without_a_gpu_driver_the_workers_are_counted_without_torch() -> None:
    code = (
        "import sys; from rfcli.engine.pool import visible_devices; "
        "print(visible_devices(None), visible_devices(3), 'torch' in sys.modules)"
    )
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert output.strip() == "[None] [None, None, None] False"
