# The two commands from the README:  `make demo`  and  `make test`.
# Installs come from the hash locks only (requirements*.lock, see `make lock`): every machine runs the same program.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LOCK ?= requirements-dev.lock

.PHONY: demo test lint unit bench lock kafka-fetch clean

# --no-deps and --require-hashes: exactly the lock, nothing resolved on this machine; the package itself is then
# installed editable without build isolation (its build requirements are in the lock too).
$(STAMP): pyproject.toml $(LOCK)
	rm -rf $(VENV)
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check --require-hashes --no-deps -r $(LOCK)
	$(BIN)/pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	$(BIN)/pip check
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/gatekeeper demo

lint: $(STAMP)
	$(BIN)/ruff check src tests bench scripts
	$(BIN)/ruff format --check src tests bench scripts
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest tests/core -q

test: $(STAMP)
	$(MAKE) lint
	bash scripts/test.sh

bench: $(STAMP)
	$(BIN)/python bench/replay_bench.py

# Re-resolve the locks within pyproject.toml's ranges and print what moved (ARGS=--upgrade for the newest).
lock:
	$(PY) scripts/lock.py $(ARGS)

clean:
	rm -rf $(VENV) .venv-lock .kafka-cache
