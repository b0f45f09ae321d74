# The two commands a newcomer needs: `make train` and `make test`.
# Both create .venv on first use and install the project (editable) into it.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
EXTRAS ?= template,dev,wandb,text,loggers,sweeps,cluster,export,serve
# Extra Hydra overrides for `make train`, e.g. `make train ARGS="loss=bce trainer.max_epochs=5"`.
ARGS ?=
# Extra pytest arguments, e.g. `make test PYTEST_ARGS="-k ddp"`.
PYTEST_ARGS ?=

# The core alone (losses, metrics, threshold search) in an environment of its own: torch,
# torchmetrics and the test tools, no Lightning, no Hydra.
CORE_VENV := .venv-core

.PHONY: install train test test-fast test-core lint format bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first, pinned to releases that install offline here; elsewhere they come from PyPI.
	$(BIN)/python -m pip install --quiet "torch==2.14.1" "torchvision==0.29.1"
	$(BIN)/python -m pip install --quiet -e ".[$(EXTRAS)]"
	touch $(STAMP)

install: $(STAMP)

train: $(STAMP)
	$(BIN)/sigmoidf1-train $(ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadgroup $(PYTEST_ARGS)

# the tests marked slow left out (real training processes, documentation pages): the edit-test loop
test-fast: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadgroup -m "not slow" $(PYTEST_ARGS)

test-core:
	test -x $(CORE_VENV)/bin/python || $(PYTHON) -m venv $(CORE_VENV)
	$(CORE_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(CORE_VENV)/bin/python -m pip install --quiet "torch==2.14.1"
	$(CORE_VENV)/bin/python -m pip install --quiet ".[test]"
	$(CORE_VENV)/bin/python -m pytest -q -p no:cacheprovider tests/core $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/ruff format --check src tests benchmarks examples

format: $(STAMP)
	$(BIN)/ruff format src tests benchmarks examples
	$(BIN)/ruff check --fix src tests benchmarks examples

# losses: seconds; throughput: minutes; loss_comparison: hours on 2 cores (resumable, skips recorded runs)
bench: $(STAMP)
	$(BIN)/python benchmarks/losses.py
	$(BIN)/python benchmarks/throughput.py --json benchmarks/results/throughput.json
	$(BIN)/python benchmarks/loss_comparison.py

clean:
	rm -rf logs/train logs/eval logs/predict .pytest_cache .ruff_cache $(CORE_VENV)
