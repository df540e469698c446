"""The runs of a worker that train on the same rows with the same tokenizer and data settings
tokenize them once.

SFTTrainer prepares its data sets (applies the chat template, tokenizes, builds labels, truncates)
when it is built. The runs of a sweep usually differ only in how they optimize (learning rate,
LoRA rank, schedule), so each of them prepared the same rows again: in the time-to-best benchmark,
that was most of the 0.6 s of set-up before each run's first chunk, 16 times over. A prepared data
set is kept, for the worker's life, under what preparing it reads: the rows and the tokenizer (the
very objects: a worker loads each once, and the entry holds them so that neither is replaced), the
set's role and packing, and every training argument except those below, which only shape the
optimization and which preparation never reads. A formatting function is never shared.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

from transformers import Trainer

OPTIMIZATION_ONLY = frozenset(
    {
        "learning_rate",
        "weight_decay",
        "adam_beta1",
        "adam_beta2",
        "adam_epsilon",
        "max_grad_norm",
        "optim",
        "optim_args",
        "lr_scheduler_type",
        "lr_scheduler_kwargs",
        "warmup_ratio",
        "warmup_steps",
        "num_train_epochs",
        "max_steps",
        "per_device_train_batch_size",
        "per_device_eval_batch_size",
        "gradient_accumulation_steps",
        "output_dir",
        "logging_dir",
        "run_name",
    }
)
"""Training arguments that two runs may differ in and still share prepared data."""


class SharedPreparation(Trainer):
    _prepared: ClassVar[dict[str, tuple[Any, Any, Any]]] = {}
    """By key: the rows, the tokenizer and the prepared data set."""

    def _prepare_dataset(
        self,
        dataset: Any,
        processing_class: Any,
        args: Any,
        packing: bool,
        formatting_func: Any,
        dataset_name: str,
    ) -> Any:
        prepare = super()._prepare_dataset  # type: ignore[misc]
        if formatting_func is not None:
            return prepare(dataset, processing_class, args, packing, formatting_func, dataset_name)
        key = preparation_key(dataset, processing_class, args.to_dict(), packing, dataset_name)
        if key not in self._prepared:
            prepared = prepare(dataset, processing_class, args, packing, formatting_func, dataset_name)
            self._prepared[key] = (dataset, processing_class, prepared)
        return self._prepared[key][2]


def preparation_key(dataset: Any, tokenizer: Any, arguments: dict[str, Any], packing: bool, role: str) -> str:
    settings = {name: value for name, value in arguments.items() if name not in OPTIMIZATION_ONLY}
    return json.dumps([id(dataset), id(tokenizer), packing, role, settings], sort_keys=True, default=str)
