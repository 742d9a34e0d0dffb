# deepserve: `make serve` and `make test` each work alone on a fresh machine (Python 3.11+).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 8001
MODEL_REPOSITORY ?= models

.PHONY: serve test lint models clean

$(BIN)/python:
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "deepserve needs Python 3.11+"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Stamp files: reinstall only when pyproject.toml changes.
$(VENV)/.installed-server: $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e ".[server]"
	touch $@

$(VENV)/.installed-dev: $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e ".[server,dev]"
	touch $@ $(VENV)/.installed-server

serve: $(VENV)/.installed-server
	$(BIN)/deepserve serve --model-repository $(MODEL_REPOSITORY) --port $(PORT)

test: $(VENV)/.installed-dev
	$(BIN)/python -m pytest

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
