# Two commands: `make run` serves everything on $(PORT); `make test` runs the whole suite.
PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 3001

.PHONY: run test lint format install install-dev migrate schema api-fuzz check-migrations bench faults clean

$(BIN)/python:
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is required"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: requirements.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.installed-dev: requirements.txt requirements-dev.txt $(VENV)/.installed
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

.env:
	$(PYTHON) scripts/init_env.py

## Serve REST + WebSockets on $(PORT), with the Celery worker and beat (embedded without Redis).
run: install .env
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py sync_llm_providers
	$(BIN)/python manage.py collectstatic --noinput --verbosity 0
	PORT=$(PORT) $(BIN)/python manage.py serve

## The whole suite (SQLite by default; PostgreSQL and Redis when DATABASE_URL and REDIS_URL are set).
test: install-dev
	$(BIN)/pytest

lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install-dev
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

check-migrations: install-dev
	DJANGO_SETTINGS_MODULE=claraverse.settings.test $(BIN)/python manage.py makemigrations --check --dry-run

schema: install-dev
	DJANGO_SETTINGS_MODULE=claraverse.settings.test $(BIN)/python manage.py spectacular --validate --fail-on-warn --file /dev/null

## Bounded schemathesis run against /api/schema/ of a live server: no 5xx, responses match the schema.
api-fuzz: install-dev
	$(BIN)/python scripts/api_fuzz.py

## Every benchmark in bench/ against a production-like deployment each starts itself (PostgreSQL and
## Redis on 127.0.0.1): one table of figures with targets, saved as JSON in bench/results/. Never
## part of the tests.
bench: install-dev
	$(BIN)/python -m bench

## Scripted fault scenarios (worker killed, Redis and PostgreSQL restarted, hanging webhooks) against
## their own throwaway PostgreSQL cluster and Redis server on free loopback ports; PASS/FAIL table.
## Not part of CI. One scenario: `.venv/bin/python -m faults redis-restart`.
faults: install-dev
	$(BIN)/python -m faults

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
