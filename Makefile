# Two commands do all the set-up on a machine with only Python 3.11+:
#   make run    creates .venv, installs attractor, compiles and trains examples/vae.att
#   make test   installs the test tools and runs the test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test bench clean

$(BIN)/attractor: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.test-deps: $(BIN)/attractor
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@

run: $(BIN)/attractor
	$(BIN)/attractor compile examples/vae.att --show derivation
	$(BIN)/attractor run examples/vae.att

test: $(VENV)/.test-deps
	$(BIN)/python -m ruff check compiler attractor grammar passes tests bench docs
	$(BIN)/python -m pytest -q

bench: $(VENV)/.test-deps
	$(BIN)/python -m pip install --quiet -e ".[bench]"
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) build *.egg-info
