# mlops_lib: `make run` sets everything up and runs the main job; `make test` sets up and runs every test.
SHELL := /bin/bash
PY ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
KERNEL := mlops_lib
PARAMS ?= params/car_purchase.yaml

.DEFAULT_GOAL := help
.PHONY: help setup data run test sync-check nb-outputs nbdev-test pytest browser prometheus postgres scale-deps orchestrate lock clean-outputs dashboard ui bench docs readme server test-quarantine

help: ## List the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}'

$(STAMP): settings.ini setup.py constraints.txt
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip setuptools wheel
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[dev,examples,onnx]"
	$(BIN)/python -m ipykernel install --sys-prefix --name $(KERNEL) --display-name "Python (mlops_lib)" >/dev/null
	touch $@

setup: $(STAMP) ## Create .venv, install mlops_lib with dev extras, register the Jupyter kernel
	@echo "setup ok: $(BIN)/mlops, kernel '$(KERNEL)'"

data: setup ## Generate the sample datasets that are missing under data/
	$(BIN)/mlops data --all --missing-only

run: data ## Set up, generate data and run the pipeline on the default params (PARAMS=...)
	$(BIN)/mlops run --params $(PARAMS)

test: setup browser prometheus postgres scale-deps orchestrate ## Set up, then: nbdev sync check, nbdev_test, pytest
	$(MAKE) sync-check
	$(MAKE) nbdev-test
	$(MAKE) pytest

sync-check: setup ## Fail when nbdev_export or nbdev_clean would change a file, or README.md is not what nbs/index.ipynb makes
	@snap() { find nbs mlops_lib -type f \( -name '*.ipynb' -o -name '*.py' \) -not -path '*/.ipynb_checkpoints/*' | sort | xargs md5sum; }; \
	before=$$(snap); $(BIN)/nbdev_export && $(BIN)/nbdev_clean; after=$$(snap); \
	if [ "$$before" != "$$after" ]; then echo "sync-check: notebooks and mlops_lib are not in sync or not clean; changed:"; \
	  diff <(echo "$$before") <(echo "$$after") | grep '^[<>]' | awk '{print "  " $$3}' | sort -u; exit 1; fi; \
	echo "sync-check: notebooks clean and mlops_lib in sync"
	@$(BIN)/python tools/readme.py --check

readme: setup ## Write README.md from nbs/index.ipynb (edit the notebook, not the README)
	$(BIN)/python tools/readme.py

docs: setup ## Build the docs site offline into _docs/ (executes the library notebooks; open _docs/index.html)
	$(BIN)/python tools/docs.py --out _docs

nb-outputs: setup ## Run the library notebooks and keep their small outputs in nbs/ (then clean them and write README.md)
	$(BIN)/python tools/docs.py --write-outputs && $(BIN)/nbdev_clean && $(BIN)/python tools/readme.py

nbdev-test: setup ## Run the library notebooks as tests
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(BIN)/nbdev_test --n_workers 2 --timing   # one OpenMP thread per notebook process: see tests/conftest.py

TEST_WORKERS ?= 3   # on 2 cores: the tests wait on servers and subprocesses a third of the time (2 workers: 64% CPU use, 22.8 min; 3: 78%, 20.1 min)
pytest: setup ## Run the pytest suite in TEST_WORKERS processes, a test file each at a time (no tests collected is a failure)
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile

test-quarantine: setup ## Run only the quarantined tests (tests/QUARANTINE): the open defects of the second wave
	MLOPS_QUARANTINE_ONLY=1 $(BIN)/pytest

ORCH_STAMP := $(VENV)/.orchestrate
$(ORCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[dev,examples,onnx,orchestrate]"
	touch $@

orchestrate: $(ORCH_STAMP) ## Install the `orchestrate` extra (Prefect 3) for `mlops schedule --cron`
	@echo "orchestrate ok: prefect $$($(BIN)/python -c 'import prefect; print(prefect.__version__)')"

browser: ## Install Debian's chromium for the browser tests (needs root or sudo)
	@if [ -x /usr/bin/chromium ]; then echo "chromium: $$(/usr/bin/chromium --version 2>/dev/null)"; \
	else SUDO=$$( [ $$(id -u) -eq 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null && /usr/bin/chromium --version; fi

prometheus: ## Install Debian's prometheus for the metrics test (needs root or sudo)
	@if command -v prometheus >/dev/null; then echo "prometheus: $$(prometheus --version 2>&1 | head -1)"; \
	else SUDO=$$( [ $$(id -u) -eq 0 ] || echo sudo ); \
	  $$SUDO apt-get -o DPkg::Lock::Timeout=600 update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -qq prometheus >/dev/null && prometheus --version 2>&1 | head -1; fi
SCALE_STAMP := $(VENV)/.installed-scale
$(SCALE_STAMP): $(STAMP) settings.ini setup.py constraints.txt
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[dev,examples,team,dask,scale_tests]"
	touch $@

scale-deps: $(SCALE_STAMP) ## Install the team, dask and scale_tests extras (PostgreSQL driver, boto3, Dask, moto's S3 stand-in)

postgres: ## Install Debian's postgresql server binaries for `mlops server` and its tests (needs root or sudo)
	@if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then echo "postgresql: $$(ls -d /usr/lib/postgresql/*/bin | tail -1)"; \
	else SUDO=$$( [ $$(id -u) -eq 0 ] || echo sudo ); \
	  $$SUDO apt-get -o DPkg::Lock::Timeout=600 update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -qq postgresql >/dev/null \
	  && ls -d /usr/lib/postgresql/*/bin; fi

server: scale-deps postgres ## Run the team tracking server (PostgreSQL under outputs/server, artifacts there) and print its URI
	$(BIN)/mlops server

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
