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

.PHONY: help run test lint format train train-multiclass tune install install-serve bench lock clean

help:
	@echo "make run      serve the shipped models on http://127.0.0.1:8080 (serving install, no TensorFlow)"
	@echo "make test     install everything and run lint plus the whole test suite"
	@echo "make train    retrain the shipped models in models/ and write reports/"
	@echo "make train-multiclass  retrain the shipped multiclass reference model models/wine"
	@echo "make tune     cost-tune models/tuned by cross-validation (about 3.5 minutes)"
	@echo "make lint     ruff check and ruff format --check"
	@echo "make bench    run the benchmarks in bench/ (prints figures)"

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

# Full environment: serving + training + dev tools.
$(DEV_ENV)/.synced: $(UV) uv.lock pyproject.toml
	UV_PROJECT_ENVIRONMENT=$(DEV_ENV) $(UV) sync --locked --extra train --group dev
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

test: $(DEV_ENV)/.synced $(SERVE_ENV)/.synced lint
	$(DEV_ENV)/bin/python -m pytest

train: $(DEV_ENV)/.synced
	$(DEV_ENV)/bin/python -m training --models-dir models --report-dir reports

# The multiclass reference model (wine data, illustrative value matrix), with the
# held-out comparison of both losses printed and kept in its card.
train-multiclass: $(DEV_ENV)/.synced
	$(DEV_ENV)/bin/python -m training multiclass --models-dir models

# Separate from train: 45 cross-validation fits take minutes, not seconds.
tune: $(DEV_ENV)/.synced
	$(DEV_ENV)/bin/python -m training tune --models-dir models --report-dir reports

lock: $(UV)
	$(UV) lock

clean:
	rm -rf $(DEV_ENV) $(SERVE_ENV) $(TOOLS) .pytest_cache .ruff_cache
