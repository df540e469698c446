"""Settings that TRL renamed or removed, each with what to write instead and the TRL version it left in.

Examples written for an older TRL still use them. Without this table the closest field name is
suggested, which for a removed field is often wrong: GRPO's `max_prompt_length` would get "did you
mean 'max_completion_length'?" when the fix is to drop it. Read from TRL's own deprecation notices
and the commits that removed each field (`git log -S` on its config class).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MovedField:
    name: str
    kinds: tuple[str, ...]
    """The trainer kinds whose TRL config had the field."""
    removed_in: str
    """The TRL version whose config class no longer has it."""
    advice: str
    """What to do instead, in the user's terms."""
    replacement: str | None = None
    """The field that took its place, when one did (the installed TRL must have it)."""

    def message(self, config_class: str) -> str:
        return f"{config_class} has no field '{self.name}': TRL {self.removed_in} removed it; {self.advice}"


MOVED_FIELDS = (
    MovedField("max_seq_length", ("sft",), "0.20", "it is called max_length now", replacement="max_length"),
    MovedField("dataset_batch_size", ("sft",), "0.18", "drop it (SFTTrainer prepares the data itself)"),
    MovedField(
        "num_of_sequences",
        ("sft",),
        "0.18",
        "set max_length instead (it counts tokens, not strings)",
        replacement="max_length",
    ),
    MovedField(
        "chars_per_token", ("sft",), "0.18", "packing is as long as max_length", replacement="max_length"
    ),
    MovedField("use_liger", ("sft",), "0.18", "use use_liger_kernel", replacement="use_liger_kernel"),
    MovedField(
        "use_liger_loss", ("dpo", "grpo"), "0.28", "use use_liger_kernel", replacement="use_liger_kernel"
    ),
    MovedField(
        "max_prompt_length",
        ("dpo",),
        "0.29",
        "max_length now bounds the prompt and the completion together, so drop it and give max_length "
        "the whole length (and leave overlong prompts out of the data)",
        replacement="max_length",
    ),
    MovedField(
        "max_completion_length",
        ("dpo",),
        "0.29",
        "max_length now bounds the prompt and the completion together, so drop it and give max_length "
        "the whole length",
        replacement="max_length",
    ),
    MovedField(
        "max_target_length",
        ("dpo",),
        "0.14",
        "max_length bounds the whole sequence",
        replacement="max_length",
    ),
    MovedField(
        "rpo_alpha",
        ("dpo",),
        "0.29",
        "add 'sft' to loss_type and give it the weight rpo_alpha had in loss_weights "
        "(loss_type: [sigmoid, sft], loss_weights: [1.0, ALPHA])",
        replacement="loss_weights",
    ),
    MovedField(
        "reference_free",
        ("dpo",),
        "0.29",
        "DPO always scores against a reference now (TRL points to its CPOTrainer for a reference-free "
        "loss, which rf does not run); drop it",
    ),
    MovedField(
        "force_use_ref_model",
        ("dpo",),
        "0.29",
        "drop it: a reference model that is given is used (in rf, model.reference)",
    ),
    MovedField(
        "ref_model_init_kwargs",
        ("dpo",),
        "0.29",
        "drop it: rf loads model.reference with model.kwargs",
    ),
    MovedField(
        "generate_during_eval",
        ("dpo",),
        "0.29",
        "drop it; to generate and score answers at every chunk boundary, give eval.metrics",
    ),
    MovedField("padding_value", ("dpo",), "0.26", "use pad_token (a string)", replacement="pad_token"),
    MovedField("label_pad_token_id", ("dpo",), "0.29", "drop it: it can no longer be set"),
    MovedField("model_adapter_name", ("dpo",), "0.29", "drop it: rf names each run's adapter itself"),
    MovedField("ref_adapter_name", ("dpo",), "0.29", "drop it: rf names each run's adapter itself"),
    MovedField("use_logits_to_keep", ("dpo",), "0.29", "drop it"),
    MovedField("tools", ("dpo",), "0.29", "tools come with the data set now (a 'tools' column)"),
    MovedField("base_model_attribute_name", ("dpo",), "0.29", "drop it"),
    MovedField("is_encoder_decoder", ("dpo",), "0.15", "drop it: TRL tells from the model"),
    MovedField(
        "max_prompt_length",
        ("grpo",),
        "0.28",
        "prompts are no longer truncated, so drop it and leave overlong prompts out of the data "
        "(max_completion_length bounds only what the model generates)",
    ),
    MovedField(
        "vllm_guided_decoding_regex",
        ("grpo",),
        "0.28",
        "use vllm_structured_outputs_regex",
        replacement="vllm_structured_outputs_regex",
    ),
    MovedField(
        "wandb_log_unique_prompts",
        ("grpo",),
        "0.27",
        "use log_unique_prompts",
        replacement="log_unique_prompts",
    ),
    MovedField(
        "vllm_device", ("grpo",), "0.18", "start a vLLM server with `trl vllm-serve` and set use_vllm"
    ),
    MovedField("vllm_dtype", ("grpo",), "0.18", "give dtype to the vLLM server (`trl vllm-serve`)"),
    MovedField(
        "vllm_max_model_len", ("grpo",), "0.18", "give max_model_len to the vLLM server (`trl vllm-serve`)"
    ),
)


def moved_field(kind: str, name: str) -> MovedField | None:
    """The table's entry for a field of `kind`'s config that TRL renamed or removed, or None."""
    return next((moved for moved in MOVED_FIELDS if moved.name == name and kind in moved.kinds), None)
