# The two commands: `make run` and `make test`. Both create .venv and install what they need.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP_RUN := $(VENV)/.installed-run
STAMP_DEV := $(VENV)/.installed-dev

.PHONY: run test test-fast lint typecheck pytest migrate clean bench

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP_RUN): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(STAMP_DEV): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@ $(STAMP_RUN)

migrate: $(STAMP_RUN)
	$(BIN)/paywall db upgrade

## make run: set up, migrate the embedded SQLite database under var/, serve on PAYWALL_BIND (127.0.0.1:8000)
run: migrate
	@# The mail worker drains the outbox beside the server and stops with it (Ctrl-C, kill, or exit).
	@# Without PAYWALL_SMTP_HOST it writes each mail as an .eml file under var/mail/ (sign-in codes too).
	@$(BIN)/paywall worker & worker=$$!; \
	trap 'kill -TERM $$worker 2>/dev/null; wait $$worker 2>/dev/null' EXIT INT TERM; \
	$(BIN)/paywall serve

## make test: set up with the development extras, then ruff, mypy and pytest
test: $(STAMP_DEV)
	$(BIN)/ruff check paywall tests migrations bench docs
	$(BIN)/ruff format --check paywall tests migrations bench docs
	$(BIN)/mypy paywall tests
	$(BIN)/pytest $(PYTEST_ARGS)

## make test-fast: pytest alone on SQLite over every core (pytest-xdist), without the tests marked
## slow (contract fuzz, browsers, fault injection, servers in subprocesses); make test runs them all
test-fast: $(STAMP_DEV)
	env -u PAYWALL_TEST_DATABASE_URL $(BIN)/pytest -q -n auto -p no:cacheprovider -m "not slow" $(PYTEST_ARGS)

lint: $(STAMP_DEV)
	$(BIN)/ruff check paywall tests migrations bench docs
	$(BIN)/ruff format --check paywall tests migrations bench docs

## make typecheck: mypy, strict as configured in pyproject.toml, on the package and its tests
typecheck: $(STAMP_DEV)
	$(BIN)/mypy paywall tests

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
