# Two entry points for a fresh machine: `make demo` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup demo test lint typecheck pytest bench clean

setup: $(BIN)/flash

$(BIN)/flash: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

demo: setup
	$(BIN)/python examples/demo.py

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: setup
	$(BIN)/mypy

# The tests wait on worker processes and HTTP far more than they compute: two at a time
# halve the suite's time on two cores. One file's tests stay together (module fixtures).
PYTEST_WORKERS ?= 2

pytest: setup
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadfile

test: lint typecheck pytest

bench: setup
	$(BIN)/python bench/build.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
