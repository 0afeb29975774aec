# skysift developer entry points. Every target creates .venv first (idempotent): a fresh clone
# needs only Python 3.11 and this Makefile.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.skysift-installed

.PHONY: install demo test lint bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

# The README's first command: simulate a default field, localize it, score it, write outputs.
demo: $(STAMP)
	$(BIN)/skysift demo --out skysift-demo

# The README's second command (and what CI runs).
test: $(STAMP)
	$(BIN)/ruff check src tests benchmarks docs
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks docs
	$(BIN)/ruff format --check src tests benchmarks docs

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_simulation.py
	$(BIN)/python benchmarks/bench_localizer.py
	$(BIN)/python benchmarks/bench_stargalaxy.py
	$(BIN)/python benchmarks/bench_large_image.py

clean:
	rm -rf $(VENV) skysift-demo .pytest_cache .ruff_cache
