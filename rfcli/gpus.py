"""The GPUs this machine offers rf, learned without touching one from this process, and the one GPU
each worker holds.

The controller never holds a device: a CUDA context on GPU 0 costs several hundred MB of worker 0's
card for the whole `rf run`. What the plan's checks and the worker pool need to know (how many GPUs,
each one's name and memory, whether it computes in bf16) comes from a short-lived child process that
initializes CUDA, answers in JSON and exits, taking its context with it. Without a GPU driver's
device file no child starts and torch is not imported at all.

A worker sees exactly one GPU: the entry of the user's `CUDA_VISIBLE_DEVICES` (an index, a UUID or a
MIG id) at the worker's position, so `CUDA_VISIBLE_DEVICES=4,5 rf run ...` trains on GPUs 4 and 5, and
no worker wraps its model in `DataParallel` over GPUs another worker holds.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from dataclasses import dataclass

from rfcli.errors import UserError

GPU_DEVICE_FILES = ("/dev/nvidiactl", "/dev/kfd")
"""An NVIDIA (CUDA) or AMD (ROCm) driver's device file. Without one torch finds no GPU, so nothing
needs to import torch (1.4 s on 2 cores) to know it."""
VISIBLE_DEVICES = "CUDA_VISIBLE_DEVICES"
PROBE_TIMEOUT_S = 120.0
PROBE = (
    "import dataclasses, json; from rfcli.gpus import own_gpus; "
    "print(json.dumps([dataclasses.asdict(gpu) for gpu in own_gpus()]))"
)
"""What the child runs: torch's own answer, then the child exits and its CUDA context goes with it."""


@dataclass(frozen=True)
class Gpu:
    visible_as: str
    """Its entry in `CUDA_VISIBLE_DEVICES` as the user gave it (or its index when they gave none):
    what a worker's own `CUDA_VISIBLE_DEVICES` is set to, so that it sees this GPU alone."""
    name: str
    total_memory: int
    """Bytes."""
    bf16: bool
    """Computes in bfloat16 (Ampere and newer)."""


def driver_present() -> bool:
    return any(os.path.exists(path) for path in GPU_DEVICE_FILES)


@functools.cache
def machine_gpus() -> tuple[Gpu, ...]:
    """The GPUs torch can use here, in torch's order; empty on a machine without any."""
    if not driver_present():
        return ()
    probe = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=PROBE_TIMEOUT_S, check=False
    )
    lines = probe.stdout.strip().splitlines()
    if probe.returncode != 0 or not lines:
        reason = (probe.stderr.strip().splitlines() or ["no answer"])[-1]
        raise UserError(f"this machine has a GPU driver, but torch could not list its GPUs: {reason}")
    found = json.loads(lines[-1])
    entries = visible_entries(os.environ.get(VISIBLE_DEVICES), len(found))
    return tuple(Gpu(**{**facts, "visible_as": entry}) for entry, facts in zip(entries, found, strict=True))


def own_gpus() -> tuple[Gpu, ...]:
    """In a worker, which holds its GPU (or none) and has torch loaded: what torch sees, asked directly."""
    import torch

    if not torch.cuda.is_available():
        return ()
    found = []
    for index in range(torch.cuda.device_count()):
        properties = torch.cuda.get_device_properties(index)
        with torch.cuda.device(index):
            bf16 = torch.cuda.is_bf16_supported()
        found.append(Gpu(str(index), properties.name, properties.total_memory, bf16))
    return tuple(found)


def visible_entries(parent: str | None, count: int) -> list[str]:
    """The `CUDA_VISIBLE_DEVICES` entry of each of the `count` GPUs torch sees, in torch's order: the
    user's own entries (CUDA ignores everything from the first invalid one on, so torch counts a
    prefix of them), or the indexes 0..count-1 when the variable is not set."""
    if parent is None:
        return [str(index) for index in range(count)]
    entries = [entry.strip() for entry in parent.split(",")]
    return entries[:count]


def worker_devices(workers: int | None) -> list[str | None]:
    """What each worker's `CUDA_VISIBLE_DEVICES` becomes (None: a CPU worker). With GPUs, one worker
    per GPU, or the first `workers` of them: one worker holds one GPU, always. Without GPUs,
    `workers` CPU workers (default 1)."""
    gpus = machine_gpus()
    if not gpus:
        return [None] * (workers or 1)
    if workers is not None and workers > len(gpus):
        raise UserError(
            f"--workers {workers}: this machine offers rf {len(gpus)} GPU(s), and a worker holds one GPU "
            f"of its own; give --workers {len(gpus)} or fewer (CUDA_VISIBLE_DEVICES chooses which GPUs)"
        )
    return [gpu.visible_as for gpu in gpus[: workers or len(gpus)]]


def mixed_precision_default(gpus: tuple[Gpu, ...]) -> bool:
    """rf trains in bf16 by default where every GPU that may train a run computes in it."""
    return bool(gpus) and all(gpu.bf16 for gpu in gpus)
