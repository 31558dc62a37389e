# The two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PG_TEST_URL ?= postgresql://postgres@127.0.0.1:5432/test
REDIS_TEST_URL ?= redis://127.0.0.1:6379/15

.PHONY: run test setup install lint scaleout-test

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	@echo "Installing, with llama.cpp for the local gear: compiling it takes several minutes."
	CMAKE_ARGS="$${CMAKE_ARGS:--DGGML_NATIVE=OFF -DLLAVA_BUILD=OFF}" \
		$(BIN)/pip install --quiet -e ".[dev,local]" \
	|| { echo "llama-cpp-python did not build (it needs a C compiler and CMake): installing" \
		"without it; the llama.cpp gear will say it is unavailable."; \
		$(BIN)/pip install --quiet -e ".[dev]"; }
	touch $(STAMP)

install: $(STAMP)

setup: install
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py clutch_setup
	$(BIN)/python manage.py ensure_admin

run: setup
	$(BIN)/python manage.py cockpit

test: setup
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -n 2
	$(MAKE) scaleout-test

# The part of the suite marked `scaleout`, again on PostgreSQL and Redis.
scaleout-test: install
	CLUTCH_DATABASE_URL=$(PG_TEST_URL) CLUTCH_REDIS_URL=$(REDIS_TEST_URL) \
		$(BIN)/python -m pytest -m scaleout

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
