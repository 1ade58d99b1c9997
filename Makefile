# The usual commands. `make test` and `make run` set everything up on a fresh machine first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CONFIG ?= configs/imdb-minilm-cpu.yaml
# Offline copy of the Hub datasets (here: ../shared/data/imdb); unset to use the Hub.
export PEFTBENCH_DATA_DIR ?= $(abspath ../shared/data)

.PHONY: setup run test test-isolated lint

$(BIN)/peftbench: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# torch first and pinned: an unpinned torch pulls a multi-GB CUDA build.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[test]"
	touch $@

setup: $(BIN)/peftbench

run: setup
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(BIN)/peftbench run $(CONFIG) $(ARGS)

test: setup
	$(BIN)/python -m pytest -q

# Every test file on its own, in a random order within the file: a test that passes only after
# another one filled a cache (issue 11) fails here. CI runs it after `make test`.
test-isolated: setup
	@status=0; for file in tests/test_*.py; do \
	  echo "== $$file"; $(BIN)/python -m pytest -p randomly "$$file" || status=1; \
	done; exit $$status

lint: setup
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
