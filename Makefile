# Two commands on a fresh machine: `make run` and `make test`. Everything else is
# set up on demand from the lock file (uv.lock) with the machine's own Python 3.11.

PYTHON ?= python3.11
UV_VERSION := 0.13.8
TOOLS := .tools
UV := $(TOOLS)/bin/uv
# Never let uv fetch an interpreter; never touch the network at run time.
export UV_PYTHON_DOWNLOADS := never
export UV_PYTHON := $(PYTHON)
export TF_CPP_MIN_LOG_LEVEL := 3

DEV_ENV := .venv
SERVE_ENV := .venv-serve
# BentoML for bench/load.py's comparison only: its own environment, never a dependency.
BENTOML_ENV := .venv-bench-bentoml
# MLServer 1.7 and KServe 0.21's Python server, the Open Inference Protocol baselines of
# bench/load.py: each in its own environment, never a dependency.
MLSERVER_ENV := .venv-bench-mlserver
KSERVE_ENV := .venv-bench-kserve
# The serving environment's onnxruntime and numpy, pinned in each bench environment.
SERVE_PINS = "onnxruntime==$$($(SERVE_ENV)/bin/python -c 'import onnxruntime; print(onnxruntime.__version__)')" \
	"numpy==$$($(SERVE_ENV)/bin/python -c 'import numpy; print(numpy.__version__)')"

.PHONY: help run test lint format train train-multiclass tune install install-serve \
	bench-env-bentoml bench-env-mlserver bench-env-kserve lock clean chromium postgresql

help:
	@echo "make run      serve the shipped models on http://127.0.0.1:8080 (serving install, no TensorFlow)"
	@echo "make test     install everything and run lint plus the whole test suite"
	@echo "make train    retrain the shipped models in models/ and write reports/"
	@echo "make train-multiclass  retrain the shipped multiclass reference model models/wine"
	@echo "make tune     cost-tune models/tuned by cross-validation (about 3.5 minutes)"
	@echo "make lint     ruff check and ruff format --check"
	@echo "bench/*.py    benchmarks that print figures, e.g. .venv/bin/python bench/load.py (each script's docstring says how)"
	@echo "make bench-env-bentoml   BentoML 1.4 in $(BENTOML_ENV)/ for bench/load.py's comparison"
	@echo "make bench-env-mlserver  MLServer 1.7 in $(MLSERVER_ENV)/ (bench/load.py, V2 JSON infer)"
	@echo "make bench-env-kserve    KServe 0.21 in $(KSERVE_ENV)/ (bench/load.py, V2 JSON infer)"

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

# Full environment: serving + training + dev tools.
$(DEV_ENV)/.synced: $(UV) uv.lock pyproject.toml
	UV_PROJECT_ENVIRONMENT=$(DEV_ENV) $(UV) sync --locked --extra train --extra batch --group dev
	@touch $@

# Serving-only environment: what the `serve` container has. No TensorFlow.
$(SERVE_ENV)/.synced: $(UV) uv.lock pyproject.toml
	UV_PROJECT_ENVIRONMENT=$(SERVE_ENV) $(UV) sync --locked --no-dev
	@touch $@

install: $(DEV_ENV)/.synced
install-serve: $(SERVE_ENV)/.synced

run: $(SERVE_ENV)/.synced
	COSTAWARE_HOST=$${COSTAWARE_HOST:-127.0.0.1} $(SERVE_ENV)/bin/python -m service

lint: $(DEV_ENV)/.synced
	$(DEV_ENV)/bin/ruff check .
	$(DEV_ENV)/bin/ruff format --check .

format: $(DEV_ENV)/.synced
	$(DEV_ENV)/bin/ruff check --fix .
	$(DEV_ENV)/bin/ruff format .

# The browser tests drive Debian's chromium (Playwright's own browser downloads are not
# reachable). As root (CI) it is installed when missing; anyone else is told how, in one line.
CHROMIUM ?= /usr/bin/chromium
chromium:
	@if [ ! -x "$(CHROMIUM)" ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			echo "installing chromium for the browser tests (apt-get install chromium)"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null \
				|| { echo "apt-get could not install chromium"; exit 1; }; \
		else \
			echo "chromium is missing for the browser tests: install it with 'sudo apt-get install chromium' (Debian's package, $(CHROMIUM))"; \
			exit 1; \
		fi; \
	fi

# The decision-log tests start a throw-away cluster of Debian's postgresql (any major
# version, tests/service/_postgres.py); installed like chromium when missing.
postgresql:
	@if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			echo "installing postgresql for the decision-log tests (apt-get install postgresql)"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null \
				|| { echo "apt-get could not install postgresql"; exit 1; }; \
		else \
			echo "postgresql is missing for the decision-log tests: install it with 'sudo apt-get install postgresql' (Debian's package)"; \
			exit 1; \
		fi; \
	fi

test: $(DEV_ENV)/.synced $(SERVE_ENV)/.synced lint chromium postgresql
	$(DEV_ENV)/bin/python -m pytest

# train, train-multiclass and tune retrain the shipped models on purpose, hence --replace
# (without it `python -m training` refuses to overwrite an existing model folder).
train: $(DEV_ENV)/.synced
	$(DEV_ENV)/bin/python -m training --models-dir models --report-dir reports --replace

# The multiclass reference model (wine data, illustrative value matrix), with the
# held-out comparison of both losses printed and kept in its card.
train-multiclass: $(DEV_ENV)/.synced
	$(DEV_ENV)/bin/python -m training multiclass --models-dir models --replace

# Separate from train: 45 cross-validation fits take minutes, not seconds.
tune: $(DEV_ENV)/.synced
	$(DEV_ENV)/bin/python -m training tune --models-dir models --report-dir reports --replace

# The same onnxruntime and numpy as the serving environment, so that the comparison is
# between servers, not between builds of the runtime.
bench-env-bentoml: $(UV) $(SERVE_ENV)/.synced
	$(UV) venv --allow-existing $(BENTOML_ENV)
	$(UV) pip install --python $(BENTOML_ENV)/bin/python "bentoml>=1.4,<1.5" \
		"onnxruntime==$$($(SERVE_ENV)/bin/python -c 'import onnxruntime; print(onnxruntime.__version__)')" \
		"numpy==$$($(SERVE_ENV)/bin/python -c 'import numpy; print(numpy.__version__)')"

bench-env-mlserver: $(UV) $(SERVE_ENV)/.synced
	$(UV) venv --allow-existing $(MLSERVER_ENV)
	$(UV) pip install --python $(MLSERVER_ENV)/bin/python "mlserver>=1.7,<1.8" $(SERVE_PINS)

bench-env-kserve: $(UV) $(SERVE_ENV)/.synced
	$(UV) venv --allow-existing $(KSERVE_ENV)
	$(UV) pip install --python $(KSERVE_ENV)/bin/python "kserve>=0.21,<0.22" $(SERVE_PINS)

lock: $(UV)
	$(UV) lock

clean:
	rm -rf $(DEV_ENV) $(SERVE_ENV) $(BENTOML_ENV) $(MLSERVER_ENV) $(KSERVE_ENV) $(TOOLS) .pytest_cache .ruff_cache
