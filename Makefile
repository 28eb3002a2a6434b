# headrace — every target creates or refreshes .venv itself (only python3 and make needed).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help demo test lint typecheck unit integration infra e2e bench experiments-local clean

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml requirements/constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c requirements/constraints.txt -e '.[dev]'
	@touch $@

demo: $(STAMP) ## the real pipeline on this machine: push the samples, show what happened, stop
	$(BIN)/headrace local demo

test: $(STAMP) lint typecheck ## lint, typecheck and all test layers (unit, integration, infra, e2e)
	$(BIN)/pytest tests

lint: $(STAMP) ## ruff
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP) ## mypy over the Pulumi program, components and handlers
	$(BIN)/mypy

unit integration infra e2e: $(STAMP) ## run one test layer
	$(BIN)/pytest tests/$@

bench: $(STAMP) ## benchmarks (prints figures; see BENCHMARKS.md)
	$(BIN)/python benchmarks/processing.py

experiments-local: $(STAMP) ## quick experiment suite on the embedded runtime; charts + summary in docs/results
	$(BIN)/headrace experiments run --local --suite quick --out docs/results; status=$$?; \
	$(BIN)/headrace experiments report --in docs/results && exit $$status

clean: ## remove the virtualenv and caches
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .headrace
