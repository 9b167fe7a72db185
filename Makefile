# datajob-operator developer tasks. `make help` lists them.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CLUSTER_DIR ?= .cluster
PYTEST_ARGS ?=

.DEFAULT_GOAL := help

.PHONY: help
help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

.PHONY: install
install: $(VENV)/.installed ## Create .venv and install the project with its dev tools

# Reinstall only when the dependency list changes (the package itself is installed editable).
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

examples/wordcount/data/corpus-000.txt: | $(BIN)/python
	$(BIN)/python examples/wordcount/generate.py

.PHONY: demo
demo: install examples/wordcount/data/corpus-000.txt ## The main job: word count over a 36 MB corpus in local mode, with failures injected
	rm -rf examples/wordcount/out
	$(BIN)/datajob run examples/wordcount/datajob.yaml --kill-every 2 --seed 1

.PHONY: tools
tools: ## Build (or reuse) the pinned Kubernetes binaries: etcd, apiserver, scheduler, ...
	bash hack/build-tools.sh

.PHONY: test
test: install tools ## Run the whole test suite (unit + real control plane)
	$(BIN)/pytest $(PYTEST_ARGS)

.PHONY: test-unit
test-unit: install ## Run the fast unit tests only
	$(BIN)/pytest -m unit $(PYTEST_ARGS)

.PHONY: lint
lint: install ## ruff, ruff format --check, mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy core operator worker tests benchmarks

.PHONY: bench
bench: install ## Run the benchmarks (they print figures; see docs/benchmarks.md)
	$(BIN)/python benchmarks/ledger_scale.py
	$(BIN)/python benchmarks/processor_throughput.py

.PHONY: crds
crds: install ## Regenerate crds/ and docs/api-reference.md from the pydantic models
	$(BIN)/python -m datajob_core.crd --output crds/datajob.dev_datajobs.yaml --docs docs/api-reference.md

.PHONY: cluster-up
cluster-up: install tools ## Start a local control plane (etcd, apiserver, scheduler, controller-manager, kwok, node agent)
	$(BIN)/python -m datajob_testenv up --dir $(CLUSTER_DIR)

.PHONY: cluster-down
cluster-down: ## Stop the local control plane started by cluster-up
	@if [ -x $(BIN)/python ]; then $(BIN)/python -m datajob_testenv down --dir $(CLUSTER_DIR); fi

.PHONY: clean
clean: cluster-down ## Remove the venv, caches and cluster state (the tool cache in ~/.cache stays)
	rm -rf $(VENV) $(CLUSTER_DIR) .mypy_cache .ruff_cache .pytest_cache build *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
