"""Take a run's weights out of rf: a standard PEFT adapter folder (or a merged or full model) with
its tokenizer, loadable without rf.

A checkpoint holds a LoRA run's adapter under the run's own adapter name (several runs share one
base model in a worker); the export loads it as PEFT's plain "default" adapter on the base model,
so `AutoPeftModelForCausalLM.from_pretrained(folder)` finds both the adapter and its base.
"""

from __future__ import annotations

from pathlib import Path

from peft import PeftModel
from transformers import AutoModelForCausalLM

from rfcli.config.plan import to_typed_config
from rfcli.models.loading import load_base_model, load_tokenizer, resolve_model_path
from rfcli.store.database import RunRecord
from rfcli.trainers.host import adapter_name


def export_run(run: RunRecord, checkpoint: Path, out: Path, merge: bool) -> str:
    """Write the run's weights and tokenizer to `out`; returns what was written, in words."""
    config = to_typed_config(run.config)
    if config.lora is None:
        model = AutoModelForCausalLM.from_pretrained(checkpoint, **config.model.kwargs)
        model.save_pretrained(out)
        what = "a full fine-tuned model"
    else:
        adapter = PeftModel.from_pretrained(load_base_model(config.model), checkpoint / adapter_name(run.id))
        if merge:
            adapter.merge_and_unload().save_pretrained(out)
            what = "the base model with the LoRA adapter merged in"
        else:
            adapter.peft_config["default"].base_model_name_or_path = loadable_base(config.model.name)
            adapter.save_pretrained(str(out))
            what = "a LoRA adapter"
    load_tokenizer(config.model).save_pretrained(out)
    return what


def loadable_base(name: str) -> str:
    """The base model as `AutoPeftModelForCausalLM` can find it from anywhere: a hub name as it is,
    a folder (a built-in's cached one included) as an absolute path."""
    path = resolve_model_path(name)
    return str(Path(path).resolve()) if Path(path).is_dir() else path
