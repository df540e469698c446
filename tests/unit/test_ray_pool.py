"""The Ray backend's pure edges: the shared folder probe and the command line's refusals (no Ray
needed: these run without starting it)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from rfcli.engine.ray_pool import ActorHome, answer_probe, check_probe_answer, probe_file
from rfcli.errors import UserError

REPO_ROOT = Path(__file__).resolve().parents[2]
HOME = ActorHome("1826d3a9c0ffee", "gpu-node-2", "10.0.0.7", 4242)


def rf_without_ray(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`rf ARGS` in a Python where `import ray` fails, as where the extra is not installed."""
    hide_ray = "import sys; sys.modules['ray'] = None; from rfcli.cli.app import main; main()"
    return subprocess.run(
        [sys.executable, "-c", hide_ray, *args], cwd=cwd, capture_output=True, text=True, timeout=60
    )


def test_backend_ray_without_ray_says_how_to_install_it_and_writes_nothing(tmp_path: Path) -> None:
    result = rf_without_ray(tmp_path, "run", str(REPO_ROOT / "configs/quickstart.yaml"), "--backend", "ray")
    assert result.returncode == 2, result.stderr
    assert "pip install 'rfcli[ray]'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_an_address_needs_the_ray_backend(tmp_path: Path) -> None:
    result = rf_without_ray(tmp_path, "run", str(REPO_ROOT / "configs/quickstart.yaml"), "--address", "auto")
    assert result.returncode == 2
    assert "--address names a Ray cluster: it needs --backend ray" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_probe_answered_from_the_same_folder_passes_and_leaves_only_the_driver_file(tmp_path: Path) -> None:
    probe_file(tmp_path, "token").write_text("token", encoding="utf-8")

    assert answer_probe(tmp_path, "token", worker_id=1)
    check_probe_answer(tmp_path, "token", 1, HOME, answered=True)

    assert [path.name for path in tmp_path.iterdir()] == [probe_file(tmp_path, "token").name]


@pytest.mark.parametrize("seen_there", [None, "old", "token"])
def test_a_node_that_cannot_see_the_folder_is_named(tmp_path: Path, seen_there: str | None) -> None:
    """The node sees no folder at the experiment's path, another one, or a copy that is not shared."""
    experiment = tmp_path / "experiment"
    experiment.mkdir()
    probe_file(experiment, "token").write_text("token", encoding="utf-8")
    elsewhere = tmp_path / "on-the-node"  # what the node sees at the experiment's path
    if seen_there is not None:
        elsewhere.mkdir()
        probe_file(elsewhere, "token").write_text(seen_there, encoding="utf-8")

    answered = answer_probe(elsewhere, "token", worker_id=1)
    with pytest.raises(UserError) as error:
        check_probe_answer(experiment, "token", 1, HOME, answered)

    assert answered == (seen_there == "token")
    message = str(error.value)
    assert "worker 1 on node 1826d3a9 (gpu-node-2, 10.0.0.7), pid 4242" in message
    assert f"cannot see the experiment folder {experiment}" in message
    assert "every node mounts" in message
