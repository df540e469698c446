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
from rfcli.models.tiny import BUILTIN_MODELS, builtin_model_path, is_builtin

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from rfcli.config.schema import ModelConfig

MODEL_FILES = ("config.json",)
HUB_PROBE_SECONDS = 5
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
    """The causal LM with the config's `model.kwargs` (dtype as a string such as "bfloat16" works; a
    bitsandbytes quantization as the mapping of `BitsAndBytesConfig`'s fields, see `loading_kwargs`)."""
    from transformers import AutoModelForCausalLM

    loaded: PreTrainedModel = from_pretrained(
        AutoModelForCausalLM.from_pretrained,
        model.name,
        "model.name",
        MODEL_FILES,
        **loading_kwargs(model.kwargs),
    )
    return loaded


def loading_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """`model.kwargs` as `from_pretrained` takes them. A YAML file cannot hold a `BitsAndBytesConfig`:
    `quantization_config: {load_in_4bit: true, ...}` (and the older bare `load_in_4bit: true`) becomes one."""
    from rfcli.config.hardware import QUANTIZATION_KEYS, quantized

    if not quantized(kwargs):
        return kwargs
    from transformers import BitsAndBytesConfig

    fields = dict(kwargs.get("quantization_config") or {})
    fields.update({key: kwargs[key] for key in QUANTIZATION_KEYS[1:] if key in kwargs})
    rest = {key: value for key, value in kwargs.items() if key not in QUANTIZATION_KEYS}
    return {**rest, "quantization_config": BitsAndBytesConfig(**fields)}


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
    if looks_like_a_path(name):
        raise no_such_folder(name, key)
    try:
        return loader(path, **kwargs)
    except OSError as error:  # transformers' error for a hub it cannot reach, or a repo it cannot find
        reason = str(error)
        raise ConfigError(
            f"'{name}' was not found locally and could not be loaded from the Hugging Face hub ({reason}); "
            "use a local folder, a hub name already in the local cache, or rf-tiny",
            key=key,
        ) from None


def locate_model(name: str, key: str) -> Path | None:
    """The local folder of model `name`: a built-in, a folder, or a hub name in the local cache.
    None for a hub name that is not cached but that the hub has (a worker downloads it). Anything
    else fails at once, not after a minute of the hub client's retries."""
    path = Path(resolve_model_path(name))
    if path.is_dir():
        return path
    if looks_like_a_path(name):
        raise no_such_folder(name, key)
    import huggingface_hub

    try:
        cached = huggingface_hub.try_to_load_from_cache(name, "config.json")
    except ValueError as error:  # not a valid repo id, e.g. spaces or a typo'd path
        raise ConfigError(
            f"'{name}' is neither a built-in model, a folder, nor a valid hub name ({error})", key=key
        ) from None
    if isinstance(cached, str):
        return Path(cached).parent
    unavailable = (
        f"'{name}' is not a built-in model ({', '.join(BUILTIN_MODELS)}), a folder, or in the local hub cache"
    )
    if huggingface_hub.is_offline_mode():
        raise ConfigError(f"{unavailable}, and HF_HUB_OFFLINE is set", key=key)
    try:
        huggingface_hub.model_info(name, timeout=HUB_PROBE_SECONDS)
    except huggingface_hub.errors.RepositoryNotFoundError:
        raise ConfigError(f"{unavailable}, and the hub has no model named so", key=key) from None
    except Exception as error:  # noqa: BLE001 - any way of not reaching the hub says the same to the user
        raise ConfigError(
            f"{unavailable}, and the hub could not be reached ({type(error).__name__}: {error})", key=key
        ) from None
    return None


def looks_like_a_path(name: str) -> bool:
    return name.startswith((".", "/", "~"))


def no_such_folder(name: str, key: str) -> ConfigError:
    return ConfigError(f"no such folder '{name}' (relative paths start from {Path.cwd()})", key=key)
