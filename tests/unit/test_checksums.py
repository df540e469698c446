"""Checkpoint checksums (`store/checksums.py`) on fake checkpoint folders: each kind of damage is
named, a damaged checkpoint is passed over for the one before it, and copies carry their own."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rfcli.store.checksums import (
    CHECKSUMS,
    DamagedCheckpoint,
    ResumePoint,
    copy_checkpoint,
    damage,
    resume_point,
    write_checksums,
)

WEIGHTS = "run_1/adapter_model.safetensors"


def checkpoint(folder: Path, step: int, checksums: bool = True) -> Path:
    path = folder / f"checkpoint-{step}"
    (path / "run_1").mkdir(parents=True)
    (path / WEIGHTS).write_bytes(bytes(range(256)) * 8)
    (path / "optimizer.pt").write_bytes(b"moments" * 10)
    (path / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    if checksums:
        write_checksums(path)
    return path


def test_an_intact_checkpoint_has_no_damage(tmp_path: Path) -> None:
    path = checkpoint(tmp_path, 4)
    assert set(json.loads((path / CHECKSUMS).read_text())["files"]) == {
        WEIGHTS,
        "optimizer.pt",
        "trainer_state.json",
    }
    assert damage(path) is None


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:40])


def zero_second_half(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] + bytes(len(data) - len(data) // 2))


@pytest.mark.parametrize(
    ("harm", "problem"),
    [
        (truncate, "is 40 bytes where 2,048 were written"),
        (zero_second_half, "differs from what was written (its SHA-256 does not match)"),
        (Path.unlink, "is missing"),
    ],
    ids=["truncated", "second half zeroed", "gone"],
)
def test_each_kind_of_damage_names_the_file(tmp_path: Path, harm: object, problem: str) -> None:
    path = checkpoint(tmp_path, 4)
    harm(path / WEIGHTS)  # type: ignore[operator]
    assert str(damage(path)) == f"{path / WEIGHTS} {problem}"


def test_damaged_checksums_are_damage_and_none_at_all_is_an_older_checkpoint(tmp_path: Path) -> None:
    path = checkpoint(tmp_path, 4)
    (path / CHECKSUMS).write_text("{not json")
    assert str(damage(path)) == f"{path / CHECKSUMS} cannot be read"
    assert damage(checkpoint(tmp_path, 8, checksums=False)) is None  # read unchecked
    assert str(damage(tmp_path / "checkpoint-12")) == f"{tmp_path / 'checkpoint-12'} is missing"


def test_a_damaged_newest_checkpoint_is_passed_over_for_the_one_before(tmp_path: Path) -> None:
    first, second, unrecorded = (checkpoint(tmp_path, step) for step in (4, 8, 12))
    truncate(second / WEIGHTS)
    point = resume_point(str(second))
    assert point.checkpoint == str(first) and [d.checkpoint for d in point.passed_over] == [second]
    assert point.fallback_line() == (
        f"{second / WEIGHTS} is 40 bytes where 2,048 were written; resumes from checkpoint-4 (step 4)"
    )
    assert resume_point(str(first)) == ResumePoint(str(first))  # a later, unrecorded one is never read
    assert unrecorded.is_dir()


def test_no_intact_checkpoint_names_every_damaged_file(tmp_path: Path) -> None:
    first, second = checkpoint(tmp_path, 4), checkpoint(tmp_path, 8)
    truncate(second / WEIGHTS)
    zero_second_half(first / "optimizer.pt")
    with pytest.raises(DamagedCheckpoint) as refused:
        resume_point(str(second))
    assert str(refused.value) == (
        f"{second / WEIGHTS} is 40 bytes where 2,048 were written; {first / 'optimizer.pt'} differs from"
        " what was written (its SHA-256 does not match); no intact checkpoint is left"
    )


def test_a_checkpoint_at_or_before_a_retry_with_changes_resumes_with_a_fresh_optimizer(
    tmp_path: Path,
) -> None:
    first, second = checkpoint(tmp_path, 4), checkpoint(tmp_path, 8)
    assert resume_point(str(first), fresh_optimizer_step=4).fresh_optimizer
    assert not resume_point(str(second), fresh_optimizer_step=4).fresh_optimizer
    truncate(second / WEIGHTS)  # the retry's own checkpoint damaged: back before the retry, still fresh
    assert resume_point(str(second), fresh_optimizer_step=4).fresh_optimizer
    assert resume_point(None) == ResumePoint(None)


def test_a_copy_leaves_files_out_renames_the_adapter_and_carries_checksums_that_say_so(
    tmp_path: Path,
) -> None:
    source = checkpoint(tmp_path / "parent", 8)
    target = tmp_path / "clone" / "checkpoint-8"
    copy_checkpoint(source, target, ("optimizer.pt",), ("run_1", "run_5"))
    assert sorted(path.relative_to(target).as_posix() for path in target.rglob("*") if path.is_file()) == [
        CHECKSUMS,
        "run_5/adapter_model.safetensors",
        "trainer_state.json",
    ]
    assert damage(target) is None
    truncate(source / WEIGHTS)
    with pytest.raises(DamagedCheckpoint, match="is 40 bytes"):
        copy_checkpoint(source, target, ("optimizer.pt",), ("run_1", "run_5"))
