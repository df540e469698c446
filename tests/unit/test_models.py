"""Built-in tiny models and model loading: real builds and loads on the CPU, never the network."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, BatchEncoding, LlamaForCausalLM
from trl.chat_template_utils import has_generation_markers, is_chat_template_stop_token_trained

from rfcli.config.errors import ConfigError
from rfcli.config.schema import ModelConfig
from rfcli.models import tiny
from rfcli.models.loading import load_base_model, load_tokenizer, resolve_model_path
from rfcli.models.tiny import BUILTIN_MODELS, builtin_model_path, is_builtin


@pytest.fixture
def hub_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """A hub lookup fails at once rather than retrying for 45 s (huggingface_hub reads HF_HUB_OFFLINE
    when it is imported, so the environment variable alone would come too late)."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


def test_rf_tiny_loads_back_offline_with_from_pretrained(hub_offline: None) -> None:
    path = builtin_model_path("rf-tiny")
    model = AutoModelForCausalLM.from_pretrained(path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    assert isinstance(model, LlamaForCausalLM)
    assert model.num_parameters() == 918_656
    assert model.config.vocab_size == len(tokenizer) == 1024
    assert (tokenizer.pad_token, tokenizer.eos_token, tokenizer.bos_token) == ("<|pad|>", "<|im_end|>", None)
    assert (model.config.pad_token_id, model.config.eos_token_id) == (
        tokenizer.pad_token_id,
        tokenizer.eos_token_id,
    )
    assert model.generation_config.eos_token_id == tokenizer.eos_token_id


@pytest.mark.parametrize(("name", "parameters"), [("rf-tiny", 918_656), ("rf-small", 29_499_904)])
def test_parameter_counts(name: str, parameters: int) -> None:
    """Counted on the meta device, which allocates no weights: checking rf-small costs nothing."""
    with torch.device("meta"):
        model = LlamaForCausalLM(tiny.llama_config(BUILTIN_MODELS[name]))
    assert model.num_parameters() == parameters


def test_chat_template_marks_assistant_turns_for_trl() -> None:
    tokenizer = AutoTokenizer.from_pretrained(builtin_model_path("rf-tiny"))
    messages = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "Hello there"},
        {"role": "user", "content": "bye"},
    ]
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    assert text == (
        "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\nHello there<|im_end|>\n"
        "<|im_start|>user\nbye<|im_end|>\n"
    )
    prompt = tokenizer.apply_chat_template(messages[:1], tokenize=False, add_generation_prompt=True)
    assert prompt == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    encoded = tokenizer.apply_chat_template(messages, return_dict=True, return_assistant_tokens_mask=True)
    assert isinstance(encoded, BatchEncoding)
    masked = [
        token for token, mask in zip(encoded["input_ids"], encoded["assistant_masks"], strict=True) if mask
    ]
    assert tokenizer.decode(masked) == "Hello there<|im_end|>"
    assert has_generation_markers(tokenizer.chat_template)
    assert is_chat_template_stop_token_trained(tokenizer)


def test_second_call_reuses_the_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    first = builtin_model_path("rf-tiny")

    def no_rebuild(spec: tiny.TinyModelSpec, folder: Path) -> None:
        raise AssertionError("rebuilt a cached model")

    monkeypatch.setattr(tiny, "build_model", no_rebuild)
    assert builtin_model_path("rf-tiny") == first


def test_a_build_gives_the_same_files_and_leaves_the_random_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reference = builtin_model_path("rf-tiny")
    monkeypatch.setenv("RF_CACHE_DIR", str(tmp_path))
    torch.manual_seed(123)
    state = torch.get_rng_state()
    rebuilt = builtin_model_path("rf-tiny")
    assert torch.equal(torch.get_rng_state(), state)
    assert rebuilt == tmp_path / "models" / "rf-tiny"
    for file in ("model.safetensors", "tokenizer.json", "config.json"):
        assert (rebuilt / file).read_bytes() == (reference / file).read_bytes()


def test_a_build_that_another_process_finished_first_is_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RF_CACHE_DIR", str(tmp_path))
    folder = tmp_path / "models" / "rf-tiny"

    def build_while_another_process_finishes(spec: tiny.TinyModelSpec, scratch: Path) -> None:
        (scratch / "config.json").write_text("{}")
        folder.mkdir()
        (folder / "theirs").write_text("")

    monkeypatch.setattr(tiny, "build_model", build_while_another_process_finishes)
    assert builtin_model_path("rf-tiny") == folder
    assert (folder / "theirs").is_file()
    assert [path.name for path in folder.parent.iterdir()] == ["rf-tiny"]  # the scratch folder is gone


def test_a_failed_build_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RF_CACHE_DIR", str(tmp_path))

    def broken_build(spec: tiny.TinyModelSpec, scratch: Path) -> None:
        (scratch / "config.json").write_text("{}")
        raise RuntimeError("disk full")

    monkeypatch.setattr(tiny, "build_model", broken_build)
    with pytest.raises(RuntimeError, match="disk full"):
        builtin_model_path("rf-tiny")
    assert list((tmp_path / "models").iterdir()) == []


def test_resolve_model_path() -> None:
    assert is_builtin("rf-tiny") and not is_builtin("TinyLlama/TinyLlama-1.1B-Chat-v1.0")
    assert resolve_model_path("rf-tiny") == str(builtin_model_path("rf-tiny"))
    assert resolve_model_path("TinyLlama/TinyLlama-1.1B-Chat-v1.0") == "TinyLlama/TinyLlama-1.1B-Chat-v1.0"
    assert resolve_model_path("~/models/mine") == str(Path.home() / "models" / "mine")


def test_load_tokenizer_and_model_with_a_string_dtype(hub_offline: None) -> None:
    tokenizer = load_tokenizer(ModelConfig())
    assert tokenizer.pad_token == "<|pad|>"
    assert load_base_model(ModelConfig(kwargs={"dtype": "bfloat16"})).dtype == torch.bfloat16
    assert load_base_model(ModelConfig(kwargs={"torch_dtype": "float16"})).dtype == torch.float16


def test_a_tokenizer_without_pad_token_pads_with_eos(tmp_path: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(builtin_model_path("rf-tiny"))
    tokenizer.pad_token = None
    tokenizer.save_pretrained(tmp_path)
    loaded = load_tokenizer(ModelConfig(tokenizer=str(tmp_path)))
    assert loaded.pad_token == loaded.eos_token == "<|im_end|>"


def test_a_missing_local_folder_names_the_key() -> None:
    with pytest.raises(ConfigError, match="no such folder './no/such/model'") as caught:
        load_base_model(ModelConfig(name="./no/such/model"))
    assert caught.value.key == "model.name"


def test_a_folder_without_a_model_says_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="has no config.json") as caught:
        load_base_model(ModelConfig(name=str(tmp_path)))
    assert caught.value.key == "model.name"
    with pytest.raises(ConfigError, match="has no tokenizer_config.json or tokenizer.json") as caught:
        load_tokenizer(ModelConfig(tokenizer=str(tmp_path)))
    assert caught.value.key == "model.tokenizer"


def test_an_unreachable_hub_name_suggests_what_to_use_instead(hub_offline: None) -> None:
    with pytest.raises(ConfigError, match="not found locally.*rf-tiny") as caught:
        load_base_model(ModelConfig(name="someone/some-model"))
    assert caught.value.key == "model.name"
    with pytest.raises(ConfigError, match="not found locally") as caught:
        load_tokenizer(ModelConfig(tokenizer="someone/some-tokenizer"))
    assert caught.value.key == "model.tokenizer"
