# The usual commands. `make test` and `make run` set everything up on a fresh machine first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CONFIG ?= configs/imdb-minilm-cpu.yaml
# Offline copy of the Hub datasets (here: ../shared/data/imdb); unset to use the Hub.
export PEFTBENCH_DATA_DIR ?= $(abspath ../shared/data)

.PHONY: setup run test test-isolated lint constraints

# The tested set of versions: constraints.txt pins every package (regenerate it with
# `make constraints` after changing what the venv holds).
$(BIN)/peftbench: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	# torch first: on its own, pip would pull a multi-GB CUDA build. This is the CPU wheel
	# where the index serves one; on a CUDA machine see the README.
	$(BIN)/pip install --quiet -c constraints.txt torch
	$(BIN)/pip install --quiet -c constraints.txt -e ".[dev]"
	touch $@

setup: $(BIN)/peftbench

run: setup
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(BIN)/peftbench run $(CONFIG) $(ARGS)

# Two pytest workers (pytest-xdist): most tests run one single-threaded process, so two at a
# time use both cores of a 2-core machine; the Ray tests stay on one worker (xdist_group).
TEST_WORKERS ?= 2
test: setup
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadgroup

# Test files each on its own, in a random order within the file: a test that passes only after
# another one filled a cache (issue 11) fails here. CI runs it on the files that start runs in
# their own processes and compare results across them (TEST_FILES=...); default: every file.
TEST_FILES ?= tests/test_*.py
test-isolated: setup
	@status=0; for file in $(TEST_FILES); do \
	  echo "== $$file"; $(BIN)/python -m pytest -p randomly "$$file" || status=1; \
	done; exit $$status

lint: setup
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

# Rewrite constraints.txt from what the venv holds (peftbench itself and local builds left out).
constraints: setup
	{ sed -n "/^#/p" constraints.txt; $(BIN)/pip freeze --exclude-editable | grep -v " @ " | sed -e "s/+cpu$$//"; } > constraints.new && mv constraints.new constraints.txt
