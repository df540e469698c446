"""Finding an experiment's folder from its file before the plan compiles (for the one-controller lock)."""

from __future__ import annotations

from pathlib import Path

from rfcli.engine.experiment import named_folder

QUICKSTART = Path("configs/quickstart.yaml")


def test_the_folder_a_file_names_with_its_overrides() -> None:
    assert named_folder(QUICKSTART, []) == Path("rf-experiments/quickstart")
    assert named_folder(QUICKSTART, ["name=other", "experiments_dir=/tmp/x"]) == Path("/tmp/x/other")


def test_a_file_that_cannot_say_gives_none(tmp_path: Path) -> None:
    assert named_folder(tmp_path / "missing.yaml", []) is None
    assert named_folder(QUICKSTART, ["name=a/b"]) is None
    assert named_folder(QUICKSTART, ["name={grid: [a, b]}"]) is None
