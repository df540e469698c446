"""Load the model and tokenizer a config names: a built-in name, a local folder or a hub name.

The mistakes a user can make here (a wrong folder, a hub name with no network) become ConfigErrors
on `model.name` / `model.tokenizer`, raised before any run starts training.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rfcli.config.errors import ConfigError
from rfcli.models.tiny import builtin_model_path, is_builtin

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from rfcli.config.schema import ModelConfig

MODEL_FILES = ("config.json",)
TOKENIZER_FILES = ("tokenizer_config.json", "tokenizer.json")


def resolve_model_path(name: str) -> str:
    """A built-in name becomes its cached folder (built on first use); '~' is expanded, since
    transformers does not; anything else (a folder or a hub name) is returned unchanged."""
    return str(builtin_model_path(name)) if is_builtin(name) else os.path.expanduser(name)


def load_tokenizer(model: ModelConfig) -> PreTrainedTokenizerBase:
    """The tokenizer, always with a pad token: TRL pads every batch and falls over without one."""
    from transformers import AutoTokenizer

    name, key = (model.tokenizer, "model.tokenizer") if model.tokenizer else (model.name, "model.name")
    tokenizer: PreTrainedTokenizerBase = from_pretrained(
        AutoTokenizer.from_pretrained, name, key, TOKENIZER_FILES
    )
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ConfigError(f"the tokenizer of '{name}' has neither a pad nor an eos token", key=key)
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_base_model(model: ModelConfig) -> PreTrainedModel:
    """The causal LM with the config's `model.kwargs` (dtype as a string such as "bfloat16" works)."""
    from transformers import AutoModelForCausalLM

    loaded: PreTrainedModel = from_pretrained(
        AutoModelForCausalLM.from_pretrained, model.name, "model.name", MODEL_FILES, **model.kwargs
    )
    return loaded


def from_pretrained(
    loader: Callable[..., Any], name: str, key: str, needed_files: tuple[str, ...], **kwargs: Any
) -> Any:
    """Call a `from_pretrained`, turning a missing folder or an unreachable hub into a ConfigError."""
    path = resolve_model_path(name)
    if Path(path).is_dir():
        if not any(Path(path, file).is_file() for file in needed_files):
            raise ConfigError(
                f"folder '{name}' has no {' or '.join(needed_files)}; "
                "expected a folder written by save_pretrained",
                key=key,
            )
        return loader(path, **kwargs)
    if name.startswith((".", "/", "~")):
        raise ConfigError(f"no such folder '{name}' (relative paths start from {Path.cwd()})", key=key)
    try:
        return loader(path, **kwargs)
    except OSError as error:  # transformers' error for a hub it cannot reach, or a repo it cannot find
        reason = str(error).splitlines()[0]
        raise ConfigError(
            f"'{name}' was not found locally and could not be loaded from the Hugging Face hub ({reason}); "
            "use a local folder, a hub name already in the local cache, or rf-tiny",
            key=key,
        ) from None
