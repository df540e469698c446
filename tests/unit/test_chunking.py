"""Chunk boundaries: whole optimizer steps, every epoch through every chunk, max_steps honoured."""

from __future__ import annotations

from rfcli.trainers.chunking import chunk_boundaries, steps_per_epoch


def test_four_chunks_of_one_epoch() -> None:
    assert chunk_boundaries(epoch_steps=10, num_chunks=4, max_steps=10) == [2, 5, 7, 10]


def test_every_epoch_passes_through_all_chunks() -> None:
    assert chunk_boundaries(epoch_steps=10, num_chunks=4, max_steps=20) == [2, 5, 7, 10, 12, 15, 17, 20]


def test_max_steps_ending_mid_epoch_ends_the_last_chunk() -> None:
    assert chunk_boundaries(epoch_steps=10, num_chunks=2, max_steps=25) == [5, 10, 15, 20, 25]


def test_a_run_shorter_than_an_epoch_still_gets_its_chunks() -> None:
    assert chunk_boundaries(epoch_steps=10, num_chunks=4, max_steps=6) == [1, 3, 4, 6]
    assert chunk_boundaries(epoch_steps=250, num_chunks=4, max_steps=100) == [25, 50, 75, 100]


def test_more_chunks_than_steps_gives_one_step_chunks() -> None:
    assert chunk_boundaries(epoch_steps=3, num_chunks=8, max_steps=3) == [1, 2, 3]


def test_one_chunk_is_the_whole_run() -> None:
    assert chunk_boundaries(epoch_steps=7, num_chunks=1, max_steps=7) == [7]


def test_steps_per_epoch_counts_a_partial_accumulation() -> None:
    assert steps_per_epoch(num_batches=10, gradient_accumulation_steps=4) == 3
    assert steps_per_epoch(num_batches=0, gradient_accumulation_steps=4) == 1
