# Two commands on a fresh machine:  `make demo` (the offline demo) and `make test` (the test suite).
# Both create .venv on first use. torch is pinned to the CPU build that lies on this machine's disk
# (torch==2.13.0); any other request would pull a multi-GB CUDA build. On a GPU machine install torch yourself first.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH ?= torch==2.13.0

$(BIN)/qlorafit: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $@

.PHONY: install demo test test-gpu
install: $(BIN)/qlorafit

demo: $(BIN)/qlorafit
	$(BIN)/qlorafit demo

test: $(BIN)/qlorafit
	$(BIN)/python -m pytest

test-gpu: $(BIN)/qlorafit
	$(BIN)/python -m pytest -m gpu
