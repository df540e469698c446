"""One GPU per worker, mapped through the user's CUDA_VISIBLE_DEVICES, learned without this process
touching a GPU (a child answers)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

from rfcli import gpus
from rfcli.engine.ray_pool import actor_options
from rfcli.errors import UserError


def fake_machine(monkeypatch: pytest.MonkeyPatch, found: list[dict[str, Any]], visible: str | None) -> None:
    """A GPU driver and a probe child that reports `found`."""
    gpus.machine_gpus.cache_clear()
    monkeypatch.setattr(gpus, "driver_present", lambda: True)
    if visible is None:
        monkeypatch.delenv(gpus.VISIBLE_DEVICES, raising=False)
    else:
        monkeypatch.setenv(gpus.VISIBLE_DEVICES, visible)

    def probe(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        assert command[:2] == [sys.executable, "-c"]
        return subprocess.CompletedProcess(command, 0, json.dumps(found) + "\n", "")

    monkeypatch.setattr(gpus.subprocess, "run", probe)


H200 = {"visible_as": "0", "name": "NVIDIA H200", "total_memory": 150_000_000_000, "bf16": True}


@pytest.fixture(autouse=True)
def forget_the_machine() -> Any:
    yield
    gpus.machine_gpus.cache_clear()


def test_each_worker_holds_the_gpu_the_user_listed_at_its_place(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_machine(monkeypatch, [H200, H200], visible="4,5")
    assert gpus.worker_devices(None) == ["4", "5"]
    assert gpus.worker_devices(1) == ["4"]


def test_uuids_and_a_prefix_that_cuda_accepts_are_kept_as_given(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_machine(monkeypatch, [H200], visible="GPU-8f2c, bogus, 3")
    assert gpus.worker_devices(None) == ["GPU-8f2c"]


def test_without_cuda_visible_devices_workers_take_the_indexes(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_machine(monkeypatch, [H200, H200, H200], visible=None)
    assert gpus.worker_devices(None) == ["0", "1", "2"]


def test_more_workers_than_gpus_is_refused_naming_the_count(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_machine(monkeypatch, [H200, H200], visible=None)
    with pytest.raises(
        UserError, match=r"--workers 3: this machine offers rf 2 GPU\(s\).*--workers 2 or fewer"
    ):
        gpus.worker_devices(3)


def test_a_driver_whose_gpus_torch_cannot_use_gives_cpu_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_machine(monkeypatch, [], visible=None)
    assert gpus.worker_devices(2) == [None, None]


def test_a_probe_that_fails_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    gpus.machine_gpus.cache_clear()
    monkeypatch.setattr(gpus, "driver_present", lambda: True)
    failed = subprocess.CompletedProcess(
        [], 1, "", "Traceback...\nRuntimeError: CUDA driver version is insufficient\n"
    )
    monkeypatch.setattr(gpus.subprocess, "run", lambda *args, **kwargs: failed)
    with pytest.raises(UserError, match="could not list its GPUs: RuntimeError: CUDA driver version"):
        gpus.machine_gpus()


@pytest.mark.skipif(gpus.driver_present(), reason="a GPU driver is present")
def test_without_a_gpu_driver_the_workers_are_counted_without_torch() -> None:
    code = (
        "import sys; from rfcli.gpus import worker_devices; "
        "print(worker_devices(None), worker_devices(3), 'torch' in sys.modules)"
    )
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert output.strip() == "[None] [None, None, None] False"


def test_the_probe_itself_answers_in_a_child_without_a_gpu() -> None:
    """The probe's own code runs (torch imports, and reports no GPU here or the GPUs where there are)."""
    output = subprocess.run(
        [sys.executable, "-c", gpus.PROBE], capture_output=True, text=True, check=True, env=os.environ
    ).stdout
    assert isinstance(json.loads(output.strip().splitlines()[-1]), list)


def test_ray_actors_each_ask_for_a_gpu_with_or_without_workers() -> None:
    assert actor_options(4, 32.0, None) == (4, {"num_gpus": 1, "num_cpus": 1.0})
    assert actor_options(4, 32.0, 2) == (2, {"num_gpus": 1, "num_cpus": 1.0})
    assert actor_options(0, 8.0, 2) == (2, {"num_cpus": 4.0, "scheduling_strategy": "SPREAD"})
    with pytest.raises(UserError, match="--workers 5: the Ray cluster has 4 GPU"):
        actor_options(4, 32.0, 5)


def test_more_workers_than_runs_or_cores_start_as_many_as_can_train_and_say_so(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from rich.console import Console

    from rfcli.cli.run import bounded_workers

    monkeypatch.setattr(gpus, "driver_present", lambda: False)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    console = Console(record=True, width=200)
    assert bounded_workers(100, 1, console, on_this_machine=True) == 1
    assert bounded_workers(100, 8, console, on_this_machine=True) == 2
    assert bounded_workers(2, 8, console, on_this_machine=True) == 2
    assert bounded_workers(100, 8, console, on_this_machine=False) == 8  # a Ray cluster's cores are its own
    assert bounded_workers(100, None, console, on_this_machine=True) == 2  # `-e NAME`: runs not counted yet
    assert bounded_workers(None, 1, console, on_this_machine=True) is None
    assert console.export_text().splitlines() == [
        "note: --workers 100: the plan has 1 run, so rf starts 1 worker",
        "note: --workers 100: this machine has 2 CPU cores, so rf starts 2 workers",
        "note: --workers 100: the plan has 8 runs, so rf starts 8 workers",
        "note: --workers 100: this machine has 2 CPU cores, so rf starts 2 workers",
    ]
