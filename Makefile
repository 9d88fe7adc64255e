# ringwatch: every task a developer or CI runs. `make help` lists them.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
RW := $(VENV)/bin/ringwatch
# The test suite runs its own stack here, on its own ports (see tests/integration/conftest.py).
TEST_STACK_HOME ?= $(HOME)/.ringwatch/test-stack
export RINGWATCH_TEST_STACK_HOME := $(TEST_STACK_HOME)
PYTEST_ARGS ?=
# The population `make run` simulates and streams through Kafka.
SIM_SUBSCRIBERS ?= 1000
SIM_MONTHS ?= 1
SIM_DIR ?= data/simulated

.DEFAULT_GOAL := help
.PHONY: help setup run up down status logs migrate analyze demo serve lint typecheck test test-unit \
        test-integration schemas bench clean

help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  \033[36m%-17s\033[0m %s\n", $$1, $$2}'

setup: ## Install what is missing: Java/Maven, .venv with Python packages, Maven artifacts
	@./deploy/local/setup.sh

run: setup ## Set up, start the stack, stream a simulated population, find rings, serve the API
	$(RW) stack up
	$(RW) db migrate
	$(RW) demo
	$(RW) simulate --subscribers $(SIM_SUBSCRIBERS) --months $(SIM_MONTHS) --out $(SIM_DIR) --kafka
	$(RW) ingest run --until-idle 5
	$(RW) db stats
	$(RW) analyze --lookback-days $$(( $(SIM_MONTHS) * 30 ))
	$(RW) examples --name "make-run"
	@echo "Neo4j Browser: http://127.0.0.1:7474/browser/ (type :play http://127.0.0.1:8000/browser/guide)"
	@echo "API: http://127.0.0.1:8000/docs"
	@echo "Ctrl-C stops the API; 'make down' stops the stack."
	$(RW) serve

up: ## Start Neo4j + GDS + Browser and Kafka
	$(RW) stack up

down: ## Stop the stack's servers
	$(RW) stack down

status: ## Health and versions of each server
	$(RW) stack status

logs: ## Last lines of both servers' logs
	$(RW) stack logs neo4j -n 30; $(RW) stack logs kafka -n 30

migrate: ## Apply cypher/schema.cypher
	$(RW) db migrate

analyze: ## Find rings and score every subscriber (GDS, rings, usage, merged risk, alerts)
	$(RW) analyze

demo: ## Write and read back the sample
	$(RW) demo

serve: ## Run the API
	$(RW) serve

lint: ## ruff (lint + format) and the checked-in event schemas
	$(VENV)/bin/ruff check ringwatch tests bench
	$(VENV)/bin/ruff format --check ringwatch tests bench
	@if [ -f ringwatch/ingest/events.py ]; then $(PY) -m ringwatch.ingest.events --check docs/events; fi

typecheck: ## mypy --strict
	$(VENV)/bin/mypy ringwatch tests bench

test-unit: ## Unit tests only (no servers)
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

test-integration: ## Integration tests against the real stack (started and stopped here)
	$(PY) -m pytest tests/integration $(PYTEST_ARGS); rc=$$?; \
	  $(RW) stack down --home $(TEST_STACK_HOME) >/dev/null; exit $$rc

test: setup lint typecheck ## Everything: set-up, lint, types, unit and integration tests on real servers
	$(PY) -m pytest tests $(PYTEST_ARGS); rc=$$?; \
	  $(RW) stack down --home $(TEST_STACK_HOME) >/dev/null; exit $$rc

schemas: ## Rewrite docs/events/*.schema.json from the event models
	$(PY) -m ringwatch.ingest.events --write docs/events

bench: ## Benchmarks (see docs/benchmarks.md)
	$(PY) -m bench.stack_startup
	$(PY) -m bench.ingest

clean: ## Remove caches (not the stack's data: see docs/operations.md)
	rm -rf .mypy_cache .ruff_cache .pytest_cache .hypothesis build dist *.egg-info
