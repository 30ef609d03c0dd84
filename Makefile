# The two commands: `make run` and `make test`. Only Python 3.11+ is needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test faults lint format bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

## run: install, migrate var/idp.db, create keys, register the demo app, serve on http://localhost:8000 (bound to 127.0.0.1)
run: $(STAMP)
	$(BIN)/idp db upgrade
	$(BIN)/idp demo
	$(BIN)/idp serve --migrate

## test: install with dev extras and run the suite, but for the slow fault tests (make faults)
test: $(STAMP)
	$(BIN)/python -m pytest -m "not faults"

## faults: only the slow fault tests (a killed master, a database refusing for a whole lease, ...)
faults: $(STAMP)
	$(BIN)/python -m pytest -m faults

## lint: ruff, and the layers' import contracts (pyproject.toml; tests/test_layers.py runs them too)
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

## bench: measure the service beside node-oidc-provider (bench/README.md; installs wrk and the
## anchor's npm packages when missing; IDP_BENCH_DATABASE_URL adds PostgreSQL; ARGS=--quick)
bench: $(STAMP)
	BENCH_PYTHON=$(BIN)/python bench/run.sh $(ARGS)

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache
