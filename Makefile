# Gridcase — the two commands: `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 5000

.PHONY: run test bench install translations clean-db help

help:
	@echo "make run    - set everything up (virtualenv, assets, database, processes, demo) and serve on http://$(HOST):$(PORT)/"
	@echo "make test   - install dev dependencies and run the whole test suite (SQLite, PostgreSQL, Redis)"
	@echo "make bench  - run the benchmarks in bench/ and print figures"

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

# Message catalogues: each feature keeps app/<feature>/translations/<lang>/LC_MESSAGES/messages.po
translations: $(BIN)/.installed
	@for dir in $$(find app -type d -name translations); do $(BIN)/pybabel -q compile -f -d $$dir || exit 1; done

node_modules/.installed: package.json package-lock.json
	npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	touch $@

install: $(BIN)/.installed node_modules/.installed translations

run: install
	$(BIN)/gridcase setup
	$(BIN)/gridcase serve --host $(HOST) --port $(PORT)

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: install
	$(BIN)/python bench/engine_throughput.py
	$(BIN)/python bench/metrics.py
	$(BIN)/python bench/replay.py
	$(BIN)/python bench/timers.py

clean-db:
	rm -f instance/gridcase.sqlite3 instance/gridcase.sqlite3-wal instance/gridcase.sqlite3-shm
