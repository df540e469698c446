"""DPO's reference log-probs are scored for the rows the runs read, batch by batch, kept by row content
and shared through the experiment folder; they equal the base model's own log-probs, for a LoRA run
(adapters disabled) and for a full fine-tune (the base model kept aside) alike."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import TrainerCallback

from rfcli.trainers.dpo_reference import ReferenceRows, row_keys, select_rows

ROWS, BATCH, STEPS = 48, 4, 2


def collated(pairs: list[tuple[list[int], list[int], list[int]]], pad_to: int = 0) -> dict[str, torch.Tensor]:
    """A DPO batch as TRL's collator makes it: prompt + chosen rows, then prompt + rejected rows,
    padded on the right."""
    sequences = [(p + c, [0] * len(p) + [1] * len(c)) for p, c, _ in pairs]
    sequences += [(p + r, [0] * len(p) + [1] * len(r)) for p, _, r in pairs]
    width = max(pad_to, *(len(ids) for ids, _ in sequences))

    def padded(rows: list[list[int]]) -> torch.Tensor:
        return torch.tensor([row + [0] * (width - len(row)) for row in rows])

    return {
        "input_ids": padded([ids for ids, _ in sequences]),
        "attention_mask": padded([[1] * len(ids) for ids, _ in sequences]),
        "completion_mask": padded([mask for _, mask in sequences]),
    }


PAIRS = [([1, 2], [3, 4], [5]), ([1, 2, 6], [7], [8, 9, 10]), ([11], [12], [13])]


def test_a_rows_key_is_its_tokens_whatever_batch_and_padding_it_comes_in() -> None:
    together = row_keys(collated(PAIRS))
    assert len(set(together)) == 3
    assert row_keys(collated(PAIRS[1:2], pad_to=9)) == together[1:2]
    moved_boundary = [([1, 2, 3], [4], [5])]  # the same tokens, one more of them counted as prompt
    assert row_keys(collated(moved_boundary)) != row_keys(collated(PAIRS[:1]))


def test_selected_rows_keep_their_chosen_and_rejected_sequences() -> None:
    batch = collated(PAIRS)
    assert row_keys(select_rows(batch, [2, 0])) == [row_keys(batch)[2], row_keys(batch)[0]]


def fake_scorer(calls: list[int]) -> Any:
    """Scores a row as minus its token count (chosen) and minus twice it (rejected)."""

    def score(batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        rows = batch["input_ids"].shape[0] // 2
        calls.append(rows)
        lengths = batch["attention_mask"].sum(dim=1).float()
        return -lengths[:rows], -2 * lengths[rows:]

    return score


def test_only_rows_no_one_scored_are_scored_and_saved_rows_are_read_back(tmp_path: Path) -> None:
    calls: list[int] = []
    table = ReferenceRows(tmp_path / "ref")
    chosen, rejected, scored = table.logps(collated(PAIRS[:2]), fake_scorer(calls))
    assert (chosen.tolist(), rejected.tolist(), scored) == ([-4.0, -4.0], [-6.0, -12.0], 2)
    _, _, scored = table.logps(collated(PAIRS[1:]), fake_scorer(calls))
    assert scored == 1 and calls == [2, 1]  # row 2 was scored already
    table.save()
    table.save()  # nothing new: no second file
    assert [path.suffix for path in (tmp_path / "ref").iterdir()] == [".pt"]  # no scratch file left
    elsewhere = ReferenceRows(tmp_path / "ref")  # another worker, or the next rf run
    chosen, _, scored = elsewhere.logps(collated(PAIRS), fake_scorer(calls))
    assert (scored, chosen.tolist(), calls) == (0, [-4.0, -4.0, -2.0], [2, 1])


def test_a_row_twice_in_one_batch_is_scored_and_counted_once(tmp_path: Path) -> None:
    calls: list[int] = []
    table = ReferenceRows(tmp_path / "ref")
    chosen, _, scored = table.logps(collated([PAIRS[0], PAIRS[1], PAIRS[0]]), fake_scorer(calls))
    assert (scored, calls, len(table), chosen.tolist()) == (2, [2], 2, [-4.0, -4.0, -4.0])


@pytest.fixture(scope="module")
def dpo_parts() -> dict[str, Any]:
    from rfcli.config.typed import to_typed_config
    from rfcli.data.sources import load_run_data
    from rfcli.models.loading import load_tokenizer

    raw = {
        "name": "ref",
        "trainer": "dpo",
        "model": {"name": "rf-tiny"},
        "data": {"train": {"source": "recipes.preference_data:chatterbot_preferences", "select": ROWS}},
        "lora": {"r": 4, "lora_alpha": 8, "target_modules": "all-linear"},
        "training": {
            "per_device_train_batch_size": BATCH,
            "max_steps": STEPS,
            "max_length": 48,
            "learning_rate": 1e-2,
            "use_cpu": True,
            "bf16": False,
            "activation_checkpointing": False,
        },
        "seed": 0,
    }
    config = to_typed_config(raw)
    train, _ = load_run_data(config)
    return {"config": config, "train": train, "tokenizer": load_tokenizer(config.model)}


def trained(parts: dict[str, Any], folder: Path, full_fine_tune: bool) -> tuple[Any, list[dict[str, float]]]:
    """rf's DPO trainer for one run, as a worker builds it, after STEPS steps; and what it logged."""
    import dataclasses

    from rfcli.models.loading import load_base_model
    from rfcli.trainers.build import build_trainer
    from rfcli.trainers.host import ModelHost

    config = parts["config"]
    model: Any
    if full_fine_tune:
        config = dataclasses.replace(config, lora=None)
        model = load_base_model(config.model)
    else:
        model, _ = ModelHost().model_for_run(1, config)
    trainer: Any = build_trainer(
        config, model, parts["tokenizer"], parts["train"], None, str(folder / "out"), reference_folder=folder
    )
    assert len(trainer.reference_rows) == 0, "scored before training: TRL no longer calls rf's precompute"
    assert "ref_chosen_logps" not in trainer.train_dataset.column_names
    logged: list[dict[str, float]] = []

    class Logged(TrainerCallback):
        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
            logged.append(dict(logs or {}))

    trainer.add_callback(Logged())
    trainer.train()
    return trainer, logged


def base_logps(parts: dict[str, Any], trainer: Any) -> dict[str, tuple[float, float]]:
    """Each training row's summed completion log-probs under the base model as loaded, computed here
    without TRL: by row key, for every row of the training set."""
    from rfcli.models.loading import load_base_model

    base = load_base_model(parts["config"].model).eval()
    rows = [trainer.train_dataset[index] for index in range(len(trainer.train_dataset))]
    batch = trainer.data_collator(rows)
    with torch.no_grad():
        logits = base(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    per_token = logits[:, :-1].log_softmax(-1).gather(-1, batch["input_ids"][:, 1:, None]).squeeze(-1)
    sums = (per_token * batch["completion_mask"][:, 1:]).sum(dim=1)
    half = len(rows)
    return {key: (float(sums[row]), float(sums[half + row])) for row, key in enumerate(row_keys(batch))}


@pytest.mark.parametrize("full_fine_tune", [False, True], ids=["lora", "full"])
def test_a_short_run_scores_only_the_rows_it_reads_and_they_are_the_base_models(
    dpo_parts: dict[str, Any], tmp_path: Path, full_fine_tune: bool
) -> None:
    trainer, logged = trained(dpo_parts, tmp_path, full_fine_tune)
    table = trainer.reference_rows
    assert len(table) == STEPS * BATCH < ROWS, "scored rows it never read"
    scored = sum(logs.get("rf/reference_rows", 0.0) for logs in logged)
    assert scored == STEPS * BATCH
    expected = base_logps(dpo_parts, trainer)
    for key, (chosen, rejected) in table._values.items():  # noqa: SLF001
        assert chosen == pytest.approx(expected[key][0], rel=1e-5)
        assert rejected == pytest.approx(expected[key][1], rel=1e-5)
    [saved] = list(table.folder.iterdir())  # written at the end of training, for the next run to read
    assert len(torch.load(saved, weights_only=True)["keys"]) == STEPS * BATCH
