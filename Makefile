# OneCert Hub — the two commands a new machine needs: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.onecert-installed
EXTRAS ?= postgres,dev

.PHONY: demo test lint install system-deps clean

# The venv is created once; the project is installed again only when pyproject.toml changes.
$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip uv

$(STAMP): pyproject.toml | $(BIN)/python
	@if [ -x $(BIN)/uv ]; then \
		$(BIN)/uv pip install --quiet --python $(BIN)/python -e '.[$(EXTRAS)]'; \
	else \
		$(BIN)/python -m pip install --quiet -e '.[$(EXTRAS)]'; \
	fi
	@# Precompile bytecode once: with PYTHONDONTWRITEBYTECODE set, every process would otherwise
	@# recompile Airflow and Great Expectations from source (seconds per command).
	@$(BIN)/python -m compileall -q -j 0 $(VENV)/lib > /dev/null 2>&1 || true
	@touch $@

install: $(STAMP)

# Tests start a throwaway PostgreSQL; a machine without its server binaries gets them from Debian.
system-deps:
	@bash scripts/ensure-system-deps.sh

demo: $(STAMP)
	$(BIN)/onecert demo

test: $(STAMP) system-deps
	$(BIN)/ruff check hub connectors dags contracts materials_store tests
	$(BIN)/mypy
	@# A breaking data-contract change needs a new major version (datacontract breaking vs main).
	$(BIN)/onecert contracts check
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check hub connectors dags contracts materials_store tests
	$(BIN)/mypy
	$(BIN)/onecert contracts check

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
