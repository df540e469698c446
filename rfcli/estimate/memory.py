"""A run's memory, as `accelerate estimate-memory` counts it: the model built on the meta device from
its config (no weights loaded, no memory taken), its size from accelerate's `calculate_maximum_sizes`
and the training overhead of its trainable part from accelerate's `estimate_training_usage` (AdamW:
gradients, two optimizer moments). Beyond what accelerate counts: LoRA adapters (PEFT builds them on
the meta device too) and the activations one micro-batch saves for the backward pass, counted by
running that micro-batch through the meta model with autograd's saved-tensor hooks (each tensor
once; the weights themselves are not activations).

What a worker holds follows from how rf trains: LoRA runs share one base model per worker and park
their adapter and optimizer state there between chunks; a full fine-tune holds its own copy of the
model and its optimizer state; only the run training now holds gradients and activations.
"""

from __future__ import annotations

import dataclasses
import json
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from rfcli.config.schema import ExperimentConfig, ModelConfig


@dataclass(frozen=True)
class RunMemory:
    total_parameters: int
    trainable_parameters: int
    model_bytes: int
    """The base model's weights as loaded (shared by a worker's LoRA runs on it)."""
    trainable_bytes: int
    """The weights the run trains: its adapter (LoRA) or the whole model (full fine-tune)."""
    gradient_bytes: int
    optimizer_bytes: int
    activation_bytes: int
    """Saved for the backward pass by one micro-batch of the longest sequences."""
    shared_model: str | None
    """For LoRA: the base model the worker shares among its runs; None for a full fine-tune."""
    reference_bytes: int = 0
    """A reference model kept beside the run (DPO: `model.reference`, or a full fine-tune's base)."""

    @property
    def parked_bytes(self) -> int:
        """What the run holds on its worker between chunks, besides a shared base model."""
        own_model = self.model_bytes if self.shared_model is None else 0
        return own_model + (self.trainable_bytes if self.shared_model else 0) + self.optimizer_bytes

    @property
    def training_bytes(self) -> int:
        """What it needs on top while it trains a chunk."""
        return self.gradient_bytes + self.activation_bytes


def worker_bytes(memories: Sequence[RunMemory], workers: int) -> int:
    """The most one worker holds: its share of the runs parked (the largest ones), each shared base
    model and reference once, and the most any of them needs while it trains."""
    share = sorted(memories, key=lambda memory: memory.parked_bytes, reverse=True)
    share = share[: math.ceil(len(memories) / workers)]
    shared = {memory.shared_model: memory.model_bytes for memory in share if memory.shared_model}
    references = max((memory.reference_bytes for memory in share), default=0)
    parked = sum(memory.parked_bytes for memory in share)
    training = max((memory.training_bytes for memory in share), default=0)
    return sum(shared.values()) + references + parked + training


def run_memory(config: ExperimentConfig, rows_per_forward: int, tokens_per_row: int) -> RunMemory:
    """The run's memory for micro-batches of `rows_per_forward` sequences of `tokens_per_row`; runs
    with the same model, LoRA settings and micro-batch are measured once."""
    key = (
        json.dumps(
            [config.model.name, config.model.kwargs, config.model.reference, config.lora, config.trainer],
            sort_keys=True,
        ),
        rows_per_forward,
        tokens_per_row,
    )
    if key not in _MEASURED:
        with warnings.catch_warnings():  # transformers' deprecation notes as PEFT wraps the meta model
            warnings.simplefilter("ignore")
            _MEASURED[key] = measured(config, rows_per_forward, tokens_per_row)
    return _MEASURED[key]


_MEASURED: dict[tuple[str, int, int], RunMemory] = {}


def measured(config: ExperimentConfig, rows: int, tokens: int) -> RunMemory:
    from accelerate.commands.estimate import estimate_training_usage
    from accelerate.utils import calculate_maximum_sizes

    model = meta_model(config.model)
    model_bytes = int(calculate_maximum_sizes(model)[0])
    if config.lora is not None:
        model = with_lora(model, config.lora)
    trainable = [parameter for parameter in model.parameters() if parameter.requires_grad]
    trainable_bytes = sum(parameter.numel() * parameter.element_size() for parameter in trainable)
    usage = estimate_training_usage(trainable_bytes, "float32")  # AdamW keeps fp32 state
    reference_bytes = 0
    if config.model.reference is not None:
        reference = dataclasses.replace(config.model, name=config.model.reference)
        reference_bytes = int(calculate_maximum_sizes(meta_model(reference))[0])
    elif config.trainer == "dpo" and config.lora is None:
        reference_bytes = model_bytes  # the base model, kept as loaded (see trainers.dpo_reference)
    return RunMemory(
        total_parameters=sum(parameter.numel() for parameter in model.parameters()),
        trainable_parameters=sum(parameter.numel() for parameter in trainable),
        model_bytes=model_bytes,
        trainable_bytes=trainable_bytes,
        gradient_bytes=int(usage["gradients"]),
        optimizer_bytes=int(usage["optimizer"]),
        activation_bytes=saved_activation_bytes(model, rows, tokens),
        shared_model=config.model.name if config.lora is not None else None,
        reference_bytes=reference_bytes,
    )


def meta_model(model: ModelConfig) -> Any:
    """The model on the meta device, in the dtype it loads in (`model.kwargs`, else its config's)."""
    import torch
    from accelerate import init_empty_weights
    from transformers import AutoConfig, AutoModelForCausalLM

    from rfcli.models.loading import MODEL_FILES, from_pretrained

    model_config = from_pretrained(AutoConfig.from_pretrained, model.name, "model.name", MODEL_FILES)
    dtype = model.kwargs.get("dtype") or getattr(model_config, "dtype", None) or torch.float32
    with init_empty_weights():
        return AutoModelForCausalLM.from_config(model_config, dtype=dtype)


def with_lora(model: Any, lora: dict[str, Any]) -> Any:
    from accelerate import init_empty_weights
    from peft import LoraConfig, get_peft_model

    with init_empty_weights():
        return get_peft_model(model, LoraConfig(**{"task_type": "CAUSAL_LM", **lora}))


def saved_activation_bytes(model: Any, rows: int, tokens: int) -> int:
    """The bytes autograd keeps for the backward pass of one forward (with the loss) of `rows`
    sequences of `tokens`, on the meta device: each saved tensor once, weights left out."""
    import torch

    weights = {id(parameter) for parameter in model.parameters()}
    saved: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        base = tensor._base if tensor._base is not None else tensor
        if id(base) not in weights and id(tensor) not in weights:
            saved[id(base)] = base.numel() * base.element_size()
        return tensor

    ids = torch.zeros((rows, max(tokens, 1)), dtype=torch.long, device="meta")
    model.train()
    # No attention mask: building one reads its values, which the meta device does not have; the
    # causal mask that takes its place keeps the same tensors.
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        model(input_ids=ids, labels=ids)
    return sum(saved.values())
