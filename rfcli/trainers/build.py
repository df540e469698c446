"""Build a run's TRL trainer (SFT, DPO or GRPO) once, with lean chunk-boundary checkpoints."""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from peft import PeftModel, get_peft_model_state_dict
from peft.utils import SAFETENSORS_WEIGHTS_NAME
from safetensors.torch import save_file
from transformers import PrinterCallback, Trainer

from rfcli.config.kinds import load_class, trainer_kind
from rfcli.config.training import training_arguments
from rfcli.trainers.checkpoints import BackgroundCheckpoints
from rfcli.trainers.dpo_reference import BaseModelReference, ReferenceCache
from rfcli.trainers.host import reference_key, reference_model
from rfcli.trainers.rewards import reward_function

if TYPE_CHECKING:
    from datasets import Dataset
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from rfcli.config.schema import ExperimentConfig


class LeanCheckpoints(Trainer):
    """Checkpoints hold the run's own weights only: with LoRA, its one adapter (not every run's
    adapter on the shared base model), and no tokenizer copy. The Trainer's resume logic loads them."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        model: Any = self.model
        self.adapter: str | None = model.active_adapter if isinstance(model, PeftModel) else None
        """The run's own adapter, active when its trainer is built; another run's may be active
        by the time its checkpoint is written."""

    def _save(self, output_dir: str | None = None, state_dict: dict[str, Any] | None = None) -> None:
        folder = str(output_dir or self.args.output_dir)
        os.makedirs(folder, exist_ok=True)
        model: Any = self.model
        if self.adapter is not None:
            save_adapter(model, self.adapter, folder)
        else:
            model.save_pretrained(folder, state_dict=state_dict)


def save_adapter(model: PeftModel, name: str, folder: str) -> None:
    """The adapter's weights and config, where `PeftModel.save_pretrained` would put them
    (a subfolder named after the adapter, which the Trainer's resume loads), without the model
    card it also writes: that card was half the time of a chunk boundary."""
    target = Path(folder) / name
    target.mkdir(parents=True, exist_ok=True)
    weights = get_peft_model_state_dict(model, adapter_name=name)
    save_file(
        {key: value.contiguous() for key, value in weights.items()},
        target / SAFETENSORS_WEIGHTS_NAME,
        metadata={"format": "pt"},
    )
    model.peft_config[name].save_pretrained(str(target))


@functools.cache
def trainer_class(trainer: str) -> type[Trainer]:
    kind = trainer_kind(trainer)
    base = load_class(kind.trainer_class)
    mixins: tuple[type, ...] = (BaseModelReference,) if kind.uses_reference else ()
    mixins += tuple(load_class(mixin) for mixin in kind.mixins)
    return type(f"Chunked{base.__name__}", (LeanCheckpoints, BackgroundCheckpoints, *mixins, base), {})


def build_trainer(
    config: ExperimentConfig,
    model: PreTrainedModel | PeftModel,
    tokenizer: PreTrainedTokenizerBase,
    train_dataset: Dataset,
    eval_dataset: Dataset | None,
    output_dir: str,
    *,
    reference_folder: Path,
) -> Trainer:
    """The run's trainer, checkpointing into `output_dir`; a DPO run shares the reference
    log-probs kept in `reference_folder`, by reference model, scoring settings and row."""
    args = training_arguments(config, output_dir, on_device=True)
    extra: dict[str, Any] = {}
    kind = trainer_kind(config.trainer)
    if kind.uses_rewards:
        extra["reward_funcs"] = [
            reward_function(reward.function, key=f"rewards[{index}].function")
            for index, reward in enumerate(config.rewards)
        ]
        args.reward_weights = [reward.weight for reward in config.rewards]  # type: ignore[attr-defined]
    if kind.uses_reference:
        extra["ref_model"] = reference_model(config.model, full_fine_tune=config.lora is None)
        extra["reference_cache"] = ReferenceCache(reference_folder, reference_key(config.model))
    trainer = trainer_class(config.trainer)(
        model=model,
        args=args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
        **extra,
    )
    trainer.remove_callback(PrinterCallback)  # logs go to the store and MLflow, not over the live table
    return trainer
