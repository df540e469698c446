"""Settings checked against the machine, when the plan compiles: what cannot work here is refused
with its fix, and what works differently here says so in a note.

Users arrive with settings written for other tools and machines (the reference system's examples set
`fp16`, `device_map: auto` and a bitsandbytes `quantization_config`). Each would otherwise be taken
without a word and fail minutes later inside a worker, after the experiment folder exists, or do
something else than the config says. The machine is described by its GPUs as `rfcli.gpus` learns them,
without this process touching one.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from rfcli.config.errors import ConfigError
from rfcli.gpus import Gpu, mixed_precision_default

if TYPE_CHECKING:
    from rfcli.config.plan import PlannedRun
    from rfcli.config.schema import ExperimentConfig

QLORA_HINT = "pip install 'rfcli[qlora]'"
QUANTIZATION_KEYS = ("quantization_config", "load_in_4bit", "load_in_8bit")
HALF_DTYPES = ("float16", "bfloat16", "half", "auto")
BITSANDBYTES_OPTIMIZERS = ("bnb", "8bit", "paged")
"""Parts of the optimizer names (`optim`) that bitsandbytes implements: adamw_bnb_8bit, paged_adamw_32bit."""


def precision(config: ExperimentConfig, gpus: Sequence[Gpu]) -> str:
    """'bf16', 'fp16' or 'fp32': the mixed precision a run trains in on this machine (rf's default
    included)."""
    training = config.training
    if training.get("fp16"):
        return "fp16"
    if training.get("bf16", mixed_precision_default(tuple(gpus)) if "fp16" not in training else False):
        return "bf16"
    return "fp32"


def quantized(model_kwargs: dict[str, Any]) -> bool:
    """The model loads quantized by bitsandbytes (4-bit or 8-bit): `model.kwargs` asks for it."""
    return any(model_kwargs.get(key) for key in QUANTIZATION_KEYS)


def model_dtype(model_kwargs: dict[str, Any]) -> str | None:
    """The dtype `model.kwargs` loads the weights in, as written (`dtype`, or its old name `torch_dtype`)."""
    value = model_kwargs.get("dtype", model_kwargs.get("torch_dtype"))
    return None if value is None else str(value).removeprefix("torch.")


def hardware_errors(config: ExperimentConfig, gpus: Sequence[Gpu]) -> Iterator[ConfigError]:
    """What cannot work on a machine with these GPUs (none: the CPU)."""
    kwargs, training = config.model.kwargs, config.training
    if "device_map" in kwargs:
        yield ConfigError(
            "rf puts each worker's model on that worker's own GPU (one GPU per worker, each training its "
            "turn of the runs); device_map would spread every worker's model over all GPUs. Remove it: "
            "to use several GPUs, rf starts a worker on each",
            key="model.kwargs.device_map",
        )
    if quantized(kwargs):
        yield from _quantization_errors(config, gpus)
    trains_in = precision(config, gpus)
    if trains_in == "fp16" and not gpus:
        yield ConfigError(
            "fp16 mixed precision needs a CUDA GPU, and this machine has none: remove it (or override "
            "training.fp16=false) to train in float32 on the CPU",
            key="training.fp16",
        )
    if trains_in == "fp16" and model_dtype(kwargs) == "bfloat16":
        yield ConfigError(
            "fp16 mixed precision on weights loaded in bfloat16 overflows (bfloat16's range is float32's, "
            "float16's is not): use training.bf16: true instead, or load the model in float32",
            key="training.fp16",
        )
    if trains_in == "fp16" and config.lora is None and model_dtype(kwargs) in ("float16", "half"):
        yield ConfigError(
            "full fine-tuning with fp16 needs float32 weights: the gradient scaler cannot unscale float16 "
            "gradients. Load the model in float32 (model.kwargs.dtype: float32), use bf16, or add LoRA",
            key="training.fp16",
        )
    without_bf16 = sorted({gpu.name for gpu in gpus if not gpu.bf16})
    if "bf16" in training and training["bf16"] and without_bf16:
        yield ConfigError(
            f"{', '.join(without_bf16)} does not compute in bfloat16 (it needs an Ampere or newer GPU): use "
            "training.fp16: true, or leave bf16 out",
            key="training.bf16",
        )
    optimizer = str(training.get("optim", ""))
    if any(part in optimizer for part in BITSANDBYTES_OPTIMIZERS) and (not gpus or not _has_bitsandbytes()):
        need = "a CUDA GPU, and this machine has none" if not gpus else f"bitsandbytes: {QLORA_HINT}"
        yield ConfigError(
            f"optimizer '{optimizer}' is bitsandbytes' and needs {need}; use adamw_torch (TRL's default)",
            key="training.optim",
        )


def _quantization_errors(config: ExperimentConfig, gpus: Sequence[Gpu]) -> Iterator[ConfigError]:
    key = next(f"model.kwargs.{name}" for name in QUANTIZATION_KEYS if config.model.kwargs.get(name))
    if not gpus:
        yield ConfigError(
            "4-bit and 8-bit quantization (bitsandbytes) needs a CUDA GPU, and this machine has none: "
            "remove it to train the model unquantized",
            key=key,
        )
    elif not _has_bitsandbytes():
        yield ConfigError(f"quantization needs bitsandbytes, which is not installed: {QLORA_HINT}", key=key)
    if config.lora is None:
        yield ConfigError(
            "a quantized model trains through LoRA adapters only (QLoRA): add a lora section, or load it "
            "unquantized to fine-tune it fully",
            key=key,
        )


def _has_bitsandbytes() -> bool:
    return importlib.util.find_spec("bitsandbytes") is not None


def hardware_notes(config: ExperimentConfig, gpus: Sequence[Gpu]) -> Iterator[str]:
    """Settings that work, but not as they would on a GPU machine."""
    dtype = model_dtype(config.model.kwargs)
    if not gpus and dtype in HALF_DTYPES:
        yield (
            f"model.kwargs: the weights load in {dtype} on this machine, which has no GPU: training runs "
            "in that precision on the CPU, slower than float32 on most CPUs"
        )
    if "torch_dtype" in config.model.kwargs:
        yield "model.kwargs.torch_dtype is transformers' old name for dtype; it still works, as dtype"


def shared_precision_errors(runs: Sequence[PlannedRun], gpus: Sequence[Gpu]) -> Iterator[ConfigError]:
    """LoRA runs of one base model share it on every worker, and accelerate wraps its forward in the
    first run's autocast: runs that train in different precisions cannot share it."""
    from rfcli.config.schema import model_key

    groups: dict[str, dict[str, list[int]]] = {}
    for run in runs:
        if run.config.lora is not None:
            by_precision = groups.setdefault(model_key(run.config.model), {})
            by_precision.setdefault(precision(run.config, gpus), []).append(run.id)
    for by_precision in groups.values():
        if len(by_precision) > 1:
            described = "; ".join(
                f"{name}: runs {', '.join(map(str, ids))}" for name, ids in by_precision.items()
            )
            yield ConfigError(
                f"LoRA runs of one base model share it on each worker, so they must train in one precision, "
                f"but these differ ({described}): give every run the same training.bf16 / training.fp16",
                key="training",
            )
