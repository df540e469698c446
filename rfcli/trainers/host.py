"""The models a worker holds: each base model loaded once, shared by every LoRA run as one adapter each."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING

from peft import LoraConfig, PeftModel, get_peft_model, prepare_model_for_kbit_training
from transformers import set_seed

from rfcli.config.hardware import quantized
from rfcli.config.schema import model_key
from rfcli.models.loading import load_base_model, load_tokenizer
from rfcli.store.layout import adapter_name
from rfcli.trainers.dpo_reference import reference_identity

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from rfcli.config.schema import ExperimentConfig, ModelConfig


def reference_key(model: ModelConfig) -> str:
    """What DPO scores the reference with: `model.reference` when given, else the base model."""
    return reference_identity(model.reference or model.name, model.kwargs, model.tokenizer)


_REFERENCES: dict[str, PreTrainedModel] = {}


def reference_model(model: ModelConfig, full_fine_tune: bool) -> PreTrainedModel | None:
    """DPO's reference as a model of its own, loaded once per worker process, frozen and shared by every
    run that scores with it: `model.reference`, or for a full fine-tune the base model as loaded (its
    own weights change as it trains, and rf scores the reference while it does; see `dpo_reference`).
    None: a LoRA run's base model, its adapters disabled, is the reference."""
    name = model.reference or (model.name if full_fine_tune else None)
    if name is None:
        return None
    key = reference_key(model)
    if key not in _REFERENCES:
        reference = load_base_model(dataclasses.replace(model, name=name))
        reference.requires_grad_(False)
        _REFERENCES[key] = reference.eval()
    return _REFERENCES[key]


def base_for_lora(config: ExperimentConfig) -> PreTrainedModel:
    """The base model LoRA adapters go on; a quantized one (QLoRA) prepared as PEFT prescribes: norms in
    float32, inputs that carry gradients, activation checkpointing only when the run asks for it."""
    base = load_base_model(config.model)
    if quantized(config.model.kwargs):
        checkpointing = bool(config.training.get("activation_checkpointing", False))
        base = prepare_model_for_kbit_training(base, use_gradient_checkpointing=checkpointing)
    return base


class ModelHost:
    """Loads each base model once per worker; a LoRA run adds its adapter, a full fine-tune its own copy."""

    def __init__(self) -> None:
        self._shared: dict[str, PeftModel] = {}
        self._tokenizers: dict[str, PreTrainedTokenizerBase] = {}
        self._owner: dict[int, str] = {}

    def tokenizer(self, model: ModelConfig) -> PreTrainedTokenizerBase:
        key = model_key(model)
        if key not in self._tokenizers:
            self._tokenizers[key] = load_tokenizer(model)
        return self._tokenizers[key]

    def model_for_run(
        self, run_id: int, config: ExperimentConfig
    ) -> tuple[PreTrainedModel | PeftModel, Callable[[], None]]:
        """The model the run trains, and how to make it the active one before each of its turns.

        Initial weights are seeded with the run's seed, so they do not depend on which runs came first.
        """
        set_seed(config.seed)
        if config.lora is None:
            return load_base_model(config.model), lambda: None
        key = model_key(config.model)
        name = adapter_name(run_id)
        lora = LoraConfig(**{"task_type": "CAUSAL_LM", **config.lora})
        shared = self._shared.get(key)
        if shared is None:
            shared = get_peft_model(base_for_lora(config), lora, adapter_name=name)
            self._shared[key] = shared
        elif name not in shared.peft_config:
            shared.add_adapter(name, lora)
        self._owner[run_id] = key
        model = shared

        def activate() -> None:
            model.set_adapter(name)

        activate()
        return model, activate

    def holds(self, run_id: int) -> bool:
        """The run has an adapter on one of this worker's shared models."""
        return run_id in self._owner

    def release(self, run_id: int) -> None:
        """Free a run's adapter (a full fine-tune's copy goes with its trainer)."""
        key = self._owner.pop(run_id, None)
        if key is None:
            return
        shared = self._shared[key]
        name = adapter_name(run_id)
        if name in shared.peft_config and len(shared.peft_config) > 1:
            shared.delete_adapter(name)
