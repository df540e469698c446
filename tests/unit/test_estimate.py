"""`rf plan --estimate`: tokens counted as the trainers tokenize, memory counted on the meta device as a
real forward keeps it; and `--calibrate` (tests/e2e/test_plan_estimate.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from rfcli.estimate.memory import run_memory
from rfcli.estimate.workload import row_lengths

MAX_LENGTH = 48


@pytest.fixture(scope="module")
def tiny() -> dict[str, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from recipes.preference_data import chatterbot_preferences
    from recipes.qa_data import chatterbot_qa
    from rfcli.models.tiny import builtin_model_path

    path = builtin_model_path("rf-tiny")
    return {
        "path": path,
        "model": AutoModelForCausalLM.from_pretrained(path),
        "tokenizer": AutoTokenizer.from_pretrained(path),
        "qa": chatterbot_qa(categories=["ai"]).select(range(40)),
        "pairs": chatterbot_preferences(categories=["ai"]).select(range(24)),
    }


def test_sft_tokens_are_those_sft_trainer_prepares(tiny: dict[str, Any], tmp_path: Path) -> None:
    from trl import SFTConfig, SFTTrainer

    args = SFTConfig(str(tmp_path), max_length=MAX_LENGTH, use_cpu=True, bf16=False, report_to="none")
    trainer = SFTTrainer(
        tiny["model"], args=args, train_dataset=tiny["qa"], processing_class=tiny["tokenizer"]
    )
    prepared = [len(ids) for ids in trainer.train_dataset["input_ids"]]  # type: ignore[index]
    assert [row for [row] in row_lengths(tiny["qa"], tiny["tokenizer"], MAX_LENGTH, 0)] == prepared


def test_dpo_tokens_are_prompt_and_each_answer_as_dpo_trainer_prepares(
    tiny: dict[str, Any], tmp_path: Path
) -> None:
    from trl import DPOConfig, DPOTrainer

    args = DPOConfig(str(tmp_path), max_length=MAX_LENGTH, use_cpu=True, bf16=False, report_to="none")
    trainer = DPOTrainer(
        tiny["model"],
        ref_model=None,
        args=args,
        train_dataset=tiny["pairs"],
        processing_class=tiny["tokenizer"],
    )
    dataset: Any = trainer.train_dataset
    prepared = [
        [min(len(prompt) + len(answer), MAX_LENGTH) for answer in (chosen, rejected)]
        for prompt, chosen, rejected in zip(
            dataset["prompt_ids"], dataset["chosen_ids"], dataset["rejected_ids"], strict=True
        )
    ]
    assert row_lengths(tiny["pairs"], tiny["tokenizer"], MAX_LENGTH, 0) == prepared


def test_meta_activations_are_what_a_real_forward_keeps_for_backward(tiny: dict[str, Any]) -> None:
    """The same count on real tensors, each storage once: the meta count may only over-count views
    it cannot tell apart, a little."""
    from peft import LoraConfig, get_peft_model

    from rfcli.config.typed import to_typed_config

    lora: dict[str, Any] = {"r": 8, "lora_alpha": 16, "target_modules": "all-linear"}
    config = to_typed_config(
        {"name": "m", "model": {"name": "rf-tiny"}, "data": {"train": "x.jsonl"}, "lora": lora}
    )
    estimated = run_memory(config, rows_per_forward=4, tokens_per_row=32)
    base = [*tiny["model"].parameters(), *tiny["model"].buffers()]  # as accelerate counts a model
    base_bytes = sum(tensor.numel() * tensor.element_size() for tensor in base)
    real = get_peft_model(
        tiny["model"], LoraConfig(task_type="CAUSAL_LM", **lora)
    )  # last: it adapts the model
    real.train()
    weights = {id(parameter) for parameter in real.parameters()}
    storages: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        base = tensor._base if tensor._base is not None else tensor
        if id(base) not in weights and id(tensor) not in weights:
            storages[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
        return tensor

    ids = torch.randint(0, real.config.vocab_size, (4, 32))
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        real(input_ids=ids, labels=ids)
    kept = sum(storages.values())
    assert kept <= estimated.activation_bytes <= 1.2 * kept
    trainable, total = real.get_nb_trainable_parameters()
    assert (estimated.trainable_parameters, estimated.total_parameters) == (trainable, total)
    assert estimated.trainable_bytes == 4 * trainable
    assert estimated.optimizer_bytes == 2 * 4 * trainable  # AdamW's two moments, as accelerate counts
    assert estimated.model_bytes == base_bytes
