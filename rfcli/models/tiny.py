"""Built-in models so rf trains end to end with no network: tiny ones (`rf-tiny`, `rf-tiny-math`,
`rf-small`) and one real pretrained model (`rf-smollm2`, see `smollm2.py`).

Each tiny model is a random-init Llama-shaped model with a byte-level BPE tokenizer trained here on
a fixed English corpus. Every built-in is built once (a tiny one in about a second), cached under
`$RF_CACHE_DIR/models/<name>`, then loaded like any saved model with `from_pretrained`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rfcli.models import smollm2
from rfcli.models.arithmetic import pretrain_arithmetic

if TYPE_CHECKING:
    from transformers import LlamaConfig, PreTrainedTokenizerFast


@dataclass(frozen=True)
class TinyModelSpec:
    """The shape of one built-in model; the tokenizer is trained to the embedding's vocabulary size."""

    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    vocab_size: int
    arithmetic_steps: int = 0
    """Full fine-tuning steps on "What is a plus b?" problems after initialisation (0: none)."""


BUILTIN_MODELS: dict[str, TinyModelSpec] = {
    # 918,656 parameters: untied embedding and lm_head 2 x 1024 x 128, 4 layers x 164,096. 3.7 MB in fp32.
    "rf-tiny": TinyModelSpec(
        hidden_size=128, num_layers=4, num_heads=4, intermediate_size=256, vocab_size=1024
    ),
    # rf-tiny taught the answer format of "What is a plus b?": 250 steps x 32 problems, about 30 s.
    "rf-tiny-math": TinyModelSpec(
        hidden_size=128,
        num_layers=4,
        num_heads=4,
        intermediate_size=256,
        vocab_size=1024,
        arithmetic_steps=250,
    ),
    # 29.5M parameters: embedding and lm_head 2 x 4096 x 512, 8 layers x 3.16M. 118 MB in fp32.
    "rf-small": TinyModelSpec(
        hidden_size=512, num_layers=8, num_heads=8, intermediate_size=1376, vocab_size=4096
    ),
}

PAD, IM_START, IM_END = "<|pad|>", "<|im_start|>", "<|im_end|>"
SPECIAL_TOKENS = [PAD, IM_START, IM_END]
"""Trained first, so they get ids 0, 1, 2 in every built-in tokenizer."""
MAX_LENGTH = 2048

# ChatML. The {% generation %} markers let TRL's assistant_only_loss mask everything but assistant turns;
# <|im_end|> sits inside them so the model learns to stop.
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' }}"
    "{%- if message['role'] == 'assistant' %}"
    "{%- generation %}{{- message['content'] + '<|im_end|>' }}{%- endgeneration %}{{- '\\n' }}"
    "{%- else %}{{- message['content'] + '<|im_end|>\\n' }}{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


def is_builtin(name: str) -> bool:
    return name in BUILTIN_MODELS or name == smollm2.NAME


def check_builtin_source(name: str) -> None:
    """Fails at plan time when a built-in is neither cached nor buildable (rf-smollm2 needs its package)."""
    if name == smollm2.NAME and not (cache_dir() / "models" / name).is_dir():
        smollm2.gguf_path()


def cache_dir() -> Path:
    return Path(os.environ.get("RF_CACHE_DIR") or Path.home() / ".cache" / "rf")


def builtin_model_path(name: str) -> Path:
    """The model's folder, built on first use. It appears by one rename of a finished folder, so a
    process that sees it sees it whole, and two processes building at once both end with a model."""
    folder = cache_dir() / "models" / name
    if folder.is_dir():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=folder.parent))
    try:
        if name == smollm2.NAME:
            smollm2.build_smollm2(scratch)
        else:
            build_model(BUILTIN_MODELS[name], scratch)
        try:
            scratch.rename(folder)
        except OSError:
            if not folder.is_dir():
                raise
            # Another process renamed its build first; both builds are identical, keep that one.
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return folder


def build_model(spec: TinyModelSpec, folder: Path) -> None:
    """Train the tokenizer, initialise the weights from a fixed seed, save both with save_pretrained."""
    import torch
    from transformers import LlamaForCausalLM

    tokenizer = train_tokenizer(spec.vocab_size)
    with torch.random.fork_rng(devices=[]):  # the fixed seed must not reset the caller's random state
        torch.manual_seed(0)
        model = LlamaForCausalLM(llama_config(spec))
        if spec.arithmetic_steps:
            pretrain_arithmetic(model, tokenizer, spec.arithmetic_steps, seed=0)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def llama_config(spec: TinyModelSpec) -> LlamaConfig:
    """Llama rather than Qwen2 shape: with a Qwen2 config AutoTokenizer swaps in another tokenizer class."""
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=spec.vocab_size,
        hidden_size=spec.hidden_size,
        num_hidden_layers=spec.num_layers,
        num_attention_heads=spec.num_heads,
        num_key_value_heads=spec.num_heads,
        intermediate_size=spec.intermediate_size,
        max_position_embeddings=MAX_LENGTH,
        tie_word_embeddings=False,
        bos_token_id=None,
        eos_token_id=SPECIAL_TOKENS.index(IM_END),
        pad_token_id=SPECIAL_TOKENS.index(PAD),
    )


def train_tokenizer(vocab_size: int) -> PreTrainedTokenizerFast:
    """Byte-level BPE (any text encodes, nothing is unknown) trained on a fixed corpus: deterministic."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    # Untrimmed offsets keep every character mapped to a token, which assistant masks rely on.
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(english_corpus(), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token=IM_END,
        pad_token=PAD,
        chat_template=CHAT_TEMPLATE,
        model_max_length=MAX_LENGTH,
    )


def english_corpus() -> list[str]:
    """Every sentence of chatterbot-corpus's English files (about 4,300, 230 kB), in a fixed order."""
    import yaml

    try:
        from chatterbot_corpus.corpus import DATA_DIRECTORY
    except ImportError as error:
        raise ImportError(
            "rf's built-in models train their tokenizer on the chatterbot-corpus package: "
            "pip install chatterbot-corpus"
        ) from error
    sentences: list[str] = []
    for path in sorted(Path(DATA_DIRECTORY, "english").glob("*.yml")):
        for conversation in yaml.safe_load(path.read_text(encoding="utf-8"))["conversations"]:
            sentences.extend(conversation if isinstance(conversation, list) else [conversation])
    return sentences
