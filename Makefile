# Two commands on a fresh machine:  make repro   and   make test
#
# TORCH_SPEC is the one knob for GPU users: the pip requirement (plus options) that installs
# torch before everything else, e.g.
#   make repro TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"
# The default is the CPU build pinned for these machines.

PYTHON     ?= python3
VENV       ?= .venv
TORCH_SPEC ?= torch==2.13.0
JOBS       ?= 2
EXECUTOR   ?= local
MODEL      ?= models/model.pt
METRIC     ?= val_dice
BIN        := $(VENV)/bin
STAMP      := $(VENV)/.installed
export PATH := $(abspath $(BIN)):$(PATH)
export DVC_NO_ANALYTICS := 1
export PYTHONUNBUFFERED := 1

.PHONY: setup repro test test-fast lint ui exp sweep server predict register import-runs notebook help

help:
	@echo "make repro   set up .venv and run the pipeline (dvc repro) on params.yaml"
	@echo "make test    set up .venv and run the test suite (slow end-to-end tests included)"
	@echo "make lint    ruff (rules and formatting) on the repository, mypy on cvcl/ and stages/ (pyproject.toml), cvcl params check"
	@echo "make ui      serve the MLflow UI for mlflow.db on http://127.0.0.1:5000"
	@echo "make exp [PRESET=paper-la] [ARGS='-S labeled=16']   one experiment (no activated .venv needed)"
	@echo "make sweep [JOBS=2]   queue the ablation grid (3 seeds) and start JOBS workers"
	@echo "make sweep EXECUTOR=ray ADDRESS=HEAD:6379   the same grid on a Ray cluster (README)"
	@echo "make remote URL=/mnt/nas/dvc/cvcl [REMOTE=storage]   the default DVC remote, with verify = true (commit .dvc/config)"
	@echo "make server [SERVER_ARGS='--host 0.0.0.0']   the team's MLflow server (PostgreSQL, logins) on port 5000"
	@echo "make predict INPUT=scans/ OUTPUT=segs/ [MODEL=runs:/<run_id>/model] [LABELS=refs/] [ARGS='--tta-flip']"
	@echo "make register EXPERIMENT=cvcl-la NAME=la-cvcl [METRIC=val_dice] [FILTER=\"params.method = 'cvcl'\"]"
	@echo "make import-runs RECORDS=gpu_out/ [EXPERIMENT=cvcl-la-gpu]   log run records (benchmarks/gpu_check.py) into MLflow"
	@echo "make notebook [ARGS='--execute']   open notebooks/ablations.ipynb in JupyterLab (or run it headless)"
	@echo "(with .venv active, every command is also \`cvcl <command>\`: cvcl --help lists them)"

$(STAMP): pyproject.toml requirements/constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet $(TORCH_SPEC)
	$(BIN)/pip install --quiet -c requirements/constraints.txt -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP)

repro: setup
	@git rev-parse --git-dir >/dev/null 2>&1 || { echo "error: make repro needs a git repository (DVC tracks experiments in git)"; exit 2; }
	dvc repro
	@echo
	@$(BIN)/cvcl report metrics/metrics.json
	@echo
	@echo "Runs are in MLflow: 'make ui', then open http://127.0.0.1:5000"
	@echo "Segment new scans with this model: make predict INPUT=<scan or folder> OUTPUT=<folder>"

# two workers, each taking whole test files (module fixtures start once): the servers', queues'
# and DVC's waits of one file overlap the other's work; the suite's budget is 15 min on 2 cores
test: setup
	$(BIN)/python -m pytest -n 2 --dist loadfile --durations=15

test-fast: setup
	$(BIN)/python -m pytest -m "not slow"

# the rules, the formatting and the types ([tool.ruff] and [tool.mypy] in pyproject.toml); CI runs it first
lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/cvcl params check

# MLflow's usage telemetry off (its documented switch; docs/tracking.md says how to turn it on)
ui: setup
	MLFLOW_DISABLE_TELEMETRY=$${MLFLOW_DISABLE_TELEMETRY:-true} $(BIN)/mlflow ui --app-name cvcl --backend-store-uri "sqlite:///$(CURDIR)/mlflow.db" --host 127.0.0.1 --port 5000

exp: setup
	dvc exp run $(if $(PRESET),$$($(BIN)/cvcl presets $(PRESET))) $(ARGS)

sweep: setup
	@if [ "$(EXECUTOR)" = ray ] && [ -z "$(ADDRESS)" ]; then echo "error: make sweep EXECUTOR=ray needs ADDRESS=<ray head host:port>"; exit 2; fi
	$(BIN)/cvcl sweep $(if $(filter ray,$(EXECUTOR)),--executor ray --address $(ADDRESS),--start $(JOBS))

# the lab's DVC remote, once (README, "Sharing data and experiments"); without URL: verify = true on
# the existing REMOTE. verify makes dvc pull/fetch rehash what they download and refuse a corrupted object
.PHONY: remote
remote: setup
	$(BIN)/cvcl remote --name "$(or $(REMOTE),storage)" $(if $(URL),"$(URL)")

server: setup
	$(BIN)/cvcl server $(SERVER_ARGS)

predict: setup
	@if [ -z "$(INPUT)" ] || [ -z "$(OUTPUT)" ]; then echo "error: make predict needs INPUT=<scan or folder> OUTPUT=<folder> (MODEL=$(MODEL) by default; runs:/<run_id>/model or models:/<name>/<version> work too)"; exit 2; fi
	$(BIN)/cvcl predict --model "$(MODEL)" --input "$(INPUT)" --output "$(OUTPUT)" $(if $(LABELS),--labels "$(LABELS)") $(ARGS)

register: setup
	@if [ -z "$(EXPERIMENT)" ] || [ -z "$(NAME)" ]; then echo "error: make register needs EXPERIMENT=cvcl-<dataset> NAME=<registered model name>"; exit 2; fi
	$(BIN)/cvcl register --experiment "$(EXPERIMENT)" --name "$(NAME)" --metric "$(METRIC)" $(if $(FILTER),--filter "$(FILTER)") $(ARGS)

import-runs: setup
	@if [ -z "$(RECORDS)" ]; then echo "error: make import-runs needs RECORDS=<folder or record files> (benchmarks/gpu_check.py's --out folder, or its runs/)"; exit 2; fi
	$(BIN)/cvcl records import $(RECORDS) $(if $(EXPERIMENT),--experiment "$(EXPERIMENT)") $(ARGS)

# JupyterLab on the project's kernel (cvcl, the .venv's Python); ARGS='--execute' runs it headless
notebook: setup
	$(BIN)/cvcl notebook $(ARGS)
