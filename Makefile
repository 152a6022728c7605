# mlops_lib: `make run` sets everything up and runs the main job; `make test` sets up and runs every test.
SHELL := /bin/bash
PY ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
KERNEL := mlops_lib
PARAMS ?= params/car_purchase.yaml

.DEFAULT_GOAL := help
.PHONY: help setup data run test sync-check nbdev-test pytest browser lock clean-outputs dashboard ui bench

help: ## List the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}'

$(STAMP): settings.ini setup.py constraints.txt
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip setuptools wheel
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[dev,examples]"
	$(BIN)/python -m ipykernel install --sys-prefix --name $(KERNEL) --display-name "Python (mlops_lib)" >/dev/null
	touch $@

setup: $(STAMP) ## Create .venv, install mlops_lib with dev extras, register the Jupyter kernel
	@echo "setup ok: $(BIN)/mlops, kernel '$(KERNEL)'"

data: setup ## Generate the sample datasets that are missing under data/
	$(BIN)/mlops data --all --missing-only

run: data ## Set up, generate data and run the pipeline on the default params (PARAMS=...)
	$(BIN)/mlops run --params $(PARAMS)

test: setup browser ## Set up, then: nbdev sync check, nbdev_test, pytest
	$(MAKE) sync-check
	$(MAKE) nbdev-test
	$(MAKE) pytest

sync-check: setup ## Fail when nbdev_export or nbdev_clean would change a file
	@snap() { find nbs mlops_lib -type f \( -name '*.ipynb' -o -name '*.py' \) -not -path '*/.ipynb_checkpoints/*' | sort | xargs md5sum; }; \
	before=$$(snap); $(BIN)/nbdev_export && $(BIN)/nbdev_clean; after=$$(snap); \
	if [ "$$before" != "$$after" ]; then echo "sync-check: notebooks and mlops_lib are not in sync or not clean; changed:"; \
	  diff <(echo "$$before") <(echo "$$after") | grep '^[<>]' | awk '{print "  " $$3}' | sort -u; exit 1; fi; \
	echo "sync-check: notebooks clean and mlops_lib in sync"

nbdev-test: setup ## Run the library notebooks as tests
	$(BIN)/nbdev_test --n_workers 2 --timing

pytest: setup ## Run the pytest suite (no tests collected is a failure)
	$(BIN)/pytest

browser: ## Install Debian's chromium for the browser tests (needs root or sudo)
	@if [ -x /usr/bin/chromium ]; then echo "chromium: $$(/usr/bin/chromium --version 2>/dev/null)"; \
	else SUDO=$$( [ $$(id -u) -eq 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null && /usr/bin/chromium --version; fi

dashboard: data ## Serve the Voila dashboard on 127.0.0.1
	$(BIN)/mlops dashboard --params $(PARAMS)

ui: setup ## Open the MLflow UI on the embedded store
	$(BIN)/mlops ui

bench: setup ## Run the benchmarks
	for b in benchmarks/*.py; do $(BIN)/python $$b || exit 1; done

lock: ## Regenerate constraints.txt from the current .venv
	{ head -2 constraints.txt; $(BIN)/python -m pip freeze --exclude-editable | grep -v '^mlops' ; } > constraints.tmp && mv constraints.tmp constraints.txt

clean-outputs: ## Delete everything runs wrote under outputs/
	rm -rf outputs/* && touch outputs/.gitkeep
