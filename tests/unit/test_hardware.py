"""Settings checked against the machine's GPUs (here: described, not present), so what cannot work is
refused when the plan compiles and what works differently says so."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from rfcli.config import hardware
from rfcli.config.hardware import hardware_errors, hardware_notes, precision, shared_precision_errors
from rfcli.config.plan import PlannedRun
from rfcli.config.typed import to_typed_config
from rfcli.gpus import Gpu

H200 = Gpu("0", "NVIDIA H200", 150_000_000_000, bf16=True)
V100 = Gpu("1", "Tesla V100-SXM2-32GB", 34_000_000_000, bf16=False)


def config_with(run_config: dict[str, Any], **sections: dict[str, Any]) -> Any:
    raw = copy.deepcopy(run_config)
    for name, values in sections.items():
        raw[name] = {**(raw.get(name) or {}), **values} if values else None
    return to_typed_config(raw)


def messages(config: Any, gpus: tuple[Gpu, ...]) -> list[str]:
    return [str(error) for error in hardware_errors(config, gpus)]


def test_rf_trains_in_bf16_where_every_gpu_can(run_config: dict[str, Any]) -> None:
    config = config_with(run_config)
    assert precision(config, (H200,)) == "bf16"
    assert precision(config, (H200, V100)) == "fp32"
    assert precision(config, ()) == "fp32"
    assert precision(config_with(run_config, training={"fp16": True}), (V100,)) == "fp16"


def test_bf16_on_a_gpu_without_it_is_refused_naming_the_gpu(run_config: dict[str, Any]) -> None:
    (message,) = messages(config_with(run_config, training={"bf16": True}), (V100,))
    assert "training.bf16: Tesla V100-SXM2-32GB does not compute in bfloat16" in message
    assert messages(config_with(run_config, training={"bf16": True}), (H200,)) == []


def test_fp16_on_bfloat16_weights_is_refused_with_the_fix(run_config: dict[str, Any]) -> None:
    config = config_with(run_config, training={"fp16": True}, model={"kwargs": {"dtype": "bfloat16"}})
    (message,) = messages(config, (H200,))
    assert "overflows" in message and "training.bf16: true" in message


def test_a_full_fine_tune_in_fp16_needs_float32_weights(run_config: dict[str, Any]) -> None:
    config = config_with(run_config, training={"fp16": True}, model={"kwargs": {"dtype": "float16"}}, lora={})
    assert config.lora is None
    (message,) = messages(config, (V100,))
    assert "cannot unscale float16 gradients" in message


def test_quantization_on_a_gpu_asks_for_the_extra_and_lora(
    run_config: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hardware, "_has_bitsandbytes", lambda: False)
    four_bit = {"kwargs": {"quantization_config": {"load_in_4bit": True}}}
    (message,) = messages(config_with(run_config, model=four_bit), (H200,))
    assert "pip install 'rfcli[qlora]'" in message
    monkeypatch.setattr(hardware, "_has_bitsandbytes", lambda: True)
    assert messages(config_with(run_config, model=four_bit), (H200,)) == []
    (message,) = messages(config_with(run_config, model=four_bit, lora={}), (H200,))
    assert "trains through LoRA adapters only (QLoRA)" in message


def test_half_precision_weights_on_a_cpu_get_a_note(run_config: dict[str, Any]) -> None:
    config = config_with(run_config, model={"kwargs": {"torch_dtype": "auto"}})
    notes = list(hardware_notes(config, ()))
    assert any("load in auto on this machine, which has no GPU" in note for note in notes)
    assert any("torch_dtype is transformers' old name for dtype" in note for note in notes)
    assert (
        list(hardware_notes(config_with(run_config, model={"kwargs": {"dtype": "bfloat16"}}), (H200,))) == []
    )


def test_runs_of_one_base_model_in_two_precisions_are_refused(run_config: dict[str, Any]) -> None:
    bf16 = config_with(run_config, training={"bf16": True})
    fp32 = config_with(run_config, training={"bf16": False})
    runs = [PlannedRun(1, bf16, {}), PlannedRun(2, fp32, {}), PlannedRun(3, bf16, {})]
    (error,) = shared_precision_errors(runs, (H200,))
    assert "bf16: runs 1, 3; fp32: runs 2" in str(error)
    other_model = config_with(run_config, training={"bf16": False}, model={"kwargs": {"dtype": "float32"}})
    assert list(shared_precision_errors([runs[0], PlannedRun(2, other_model, {})], (H200,))) == []


def test_a_yaml_quantization_becomes_a_bitsandbytes_config() -> None:
    from transformers import BitsAndBytesConfig

    from rfcli.models.loading import loading_kwargs

    kwargs = loading_kwargs(
        {"quantization_config": {"load_in_4bit": True, "bnb_4bit_quant_type": "nf4"}, "dtype": "bfloat16"}
    )
    config = kwargs["quantization_config"]
    assert (
        isinstance(config, BitsAndBytesConfig) and config.load_in_4bit and config.bnb_4bit_quant_type == "nf4"
    )
    assert kwargs["dtype"] == "bfloat16"
    assert loading_kwargs({"load_in_8bit": True})["quantization_config"].load_in_8bit
    assert loading_kwargs({"dtype": "float32"}) == {"dtype": "float32"}


def test_a_quantized_base_is_prepared_for_lora_before_its_first_adapter(
    run_config: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from rfcli.trainers import host

    prepared: list[tuple[Any, bool]] = []
    monkeypatch.setattr(host, "load_base_model", lambda model: "base model")

    def prepare(model: Any, use_gradient_checkpointing: bool) -> Any:
        prepared.append((model, use_gradient_checkpointing))
        return model

    monkeypatch.setattr(host, "prepare_model_for_kbit_training", prepare)
    four_bit = {"kwargs": {"quantization_config": {"load_in_4bit": True}}}
    assert host.base_for_lora(config_with(run_config, model=four_bit)) == "base model"
    assert prepared == [("base model", False)]  # rf's default: no activation checkpointing
    host.base_for_lora(config_with(run_config))
    assert len(prepared) == 1
