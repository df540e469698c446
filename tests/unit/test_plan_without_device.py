"""The plan's checks run in the controller, which must never hold a GPU: on a machine with GPUs, compiling
a plan (TRL's config classes included) takes no CUDA context."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from rfcli import gpus
from rfcli.config.plan import compile_plan
from rfcli.gpus import Gpu

REPO_ROOT = Path(__file__).resolve().parents[2]
H200 = Gpu("0", "NVIDIA H200", 150_000_000_000, bf16=True)


def no_device(name: str) -> Any:
    def touched(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"the plan's checks touched a GPU: torch.cuda.{name}")

    return touched


@pytest.fixture
def gpu_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    """torch says a GPU is there (as on a GPU machine); anything that would make a CUDA context fails."""
    import trl  # imported before torch.cuda is patched: torch's compiler registers its functions then

    for kind in ("SFTConfig", "DPOConfig", "GRPOConfig"):
        getattr(trl, kind)
    monkeypatch.setattr(gpus, "machine_gpus", lambda: (H200,))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    for name in (
        "_lazy_init",
        "init",
        "set_device",
        "current_device",
        "is_bf16_supported",
        "get_device_properties",
    ):
        monkeypatch.setattr(torch.cuda, name, no_device(name))


def test_compiling_a_plan_on_a_gpu_machine_takes_no_cuda_context(
    gpu_machine: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(REPO_ROOT)
    plan = compile_plan(Path("configs/quickstart.yaml"), [])
    assert len(plan.runs) == 4


def test_the_defaults_for_a_gpu_machine_are_bf16_without_activation_checkpointing(
    gpu_machine: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from rfcli.config.training import training_arguments

    monkeypatch.chdir(REPO_ROOT)
    config = compile_plan(Path("configs/quickstart.yaml"), []).runs[0].config
    args = training_arguments(config, str(tmp_path))
    assert args.bf16 and not args.activation_checkpointing
    assert args.use_cpu  # built for the checks only: TRL set up no device
