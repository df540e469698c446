"""Runs that differ only in how they optimize share their prepared data; any other setting, other
rows or another role prepare their own, and what is shared is what SFTTrainer prepares itself."""

from __future__ import annotations

from typing import Any

import pytest

from rfcli.trainers.shared_preparation import preparation_key

ARGUMENTS = {"learning_rate": 1e-3, "max_length": 64, "seed": 42, "output_dir": "runs/1"}


def key(**changes: Any) -> str:
    rows, tokenizer = changes.pop("rows", "rows"), changes.pop("tokenizer", "tokenizer")
    return preparation_key(rows, tokenizer, {**ARGUMENTS, **changes}, False, "train")


def test_runs_that_differ_in_optimization_only_share() -> None:
    assert key(learning_rate=1e-4, output_dir="runs/2") == key()


@pytest.mark.parametrize(
    "changes", [{"max_length": 32}, {"seed": 1}, {"rows": "other rows"}, {"tokenizer": "t2"}]
)
def test_anything_else_prepares_again(changes: dict[str, Any]) -> None:
    assert key(**changes) != key()


def test_train_and_eval_rows_are_kept_apart() -> None:
    assert preparation_key("rows", "tokenizer", ARGUMENTS, False, "eval") != key()


def test_sft_trainers_share_what_sft_trainer_prepares(monkeypatch: pytest.MonkeyPatch) -> None:
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from rfcli.models.tiny import builtin_model_path
    from rfcli.trainers.shared_preparation import SharedPreparation

    monkeypatch.setattr(SharedPreparation, "_prepared", {})
    path = builtin_model_path("rf-tiny")
    model = AutoModelForCausalLM.from_pretrained(path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    rows = Dataset.from_list([{"text": f"row {i} " + "word " * i} for i in range(12)])
    shared: Any = type("Shared", (SharedPreparation, SFTTrainer), {})

    def build(cls: Any, learning_rate: float, max_length: int) -> Any:
        arguments = SFTConfig(
            output_dir=f"unused-{learning_rate}",
            learning_rate=learning_rate,
            max_length=max_length,
            use_cpu=True,
            bf16=False,
            report_to="none",
        )
        return cls(
            model=model, args=arguments, train_dataset=rows, eval_dataset=rows, processing_class=tokenizer
        )

    first, second = build(shared, 1e-3, 16), build(shared, 1e-4, 16)
    assert second.train_dataset is first.train_dataset and second.eval_dataset is first.eval_dataset
    assert first.train_dataset is not first.eval_dataset
    shorter = build(shared, 1e-3, 8)
    assert shorter.train_dataset is not first.train_dataset
    assert max(len(ids) for ids in shorter.train_dataset["input_ids"]) == 8
    assert len(SharedPreparation._prepared) == 4  # train and eval, at max_length 16 and 8
    alone = build(SFTTrainer, 1e-3, 16)
    assert alone.train_dataset["input_ids"] == first.train_dataset["input_ids"]
