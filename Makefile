# Every target documents itself: `make help`.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
KAFKA_PORT ?= 19092
export JOURNEY_TEST_KAFKA ?= 127.0.0.1:$(KAFKA_PORT)

.DEFAULT_GOAL := help
.PHONY: help runtime install test unit bench bench-export lint format typecheck schema screenshots kafka kafka-stop kafka-status postgres postgres-stop demo clean

help: ## Show this help
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}'

# Two stamps in one .venv: the runtime dependencies (all `make demo` needs, ~60 MB) and the
# development extras on top (test, lint, typecheck: pytest, mypy, Playwright, ~335 MB).
RUNTIME := $(VENV)/.installed-runtime
DEV := $(VENV)/.installed-dev
DEMO_PORT ?= 8000

$(RUNTIME): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e .
	@touch $@

$(DEV): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	@touch $@ $(RUNTIME)

runtime: $(RUNTIME) ## Create .venv with the runtime dependencies only and the `journey` command
install: $(DEV) ## Create .venv with the runtime and the development dependencies (tests, lint)

test: install kafka postgres ## Every test, on a real local Kafka and PostgreSQL (started if none runs)
	JOURNEY_TEST_POSTGRES=$$(bash scripts/postgres.sh url) $(BIN)/pytest tests

unit: install ## Fast tests only: no Kafka, no browser
	$(BIN)/pytest tests -m "not kafka and not kcat and not browser and not postgres"

lint: install ## ruff lint and format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install ## Apply ruff formatting and safe fixes
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

typecheck: install ## mypy --strict
	$(BIN)/mypy

schema: install ## Re-export the JSON Schemas into docs/schema/
	$(BIN)/journey schema --out docs/schema

screenshots: install ## Screenshots of the console (seed stories) and the service report (synthetic) into docs/img/ (headless Chromium)
	$(BIN)/python scripts/screenshots.py

kafka: ## Start a single-node Apache Kafka (KRaft) on 127.0.0.1:$(KAFKA_PORT); idempotent
	bash scripts/kafka.sh start

kafka-stop: ## Stop the local Kafka started by `make kafka` (by its pid)
	bash scripts/kafka.sh stop

kafka-status: ## Say whether the local Kafka runs
	bash scripts/kafka.sh status

postgres: ## Start a local PostgreSQL (Debian package) on 127.0.0.1:15432 (PG_PORT); prints the store URL last
	bash scripts/postgres.sh start

postgres-stop: ## Stop the local PostgreSQL started by `make postgres`
	bash scripts/postgres.sh stop

demo: runtime ## The main job: the seed stories through the whole pipeline, then the agent console on them (DEMO_PORT; prints a sign-in address with a demo agent key)
	$(BIN)/journey demo --serve --port $(DEMO_PORT)

# BENCH_ARGS passes options through, e.g. `make bench BENCH_ARGS="--large --profile"`.
BENCH_ARGS ?=
bench: install kafka postgres ## Benchmarks on the local Kafka and PostgreSQL beside bare clients (docs/BENCHMARKS.md); BENCH_ARGS="--large --profile"
	$(BIN)/python -m bench.run --broker kafka://127.0.0.1:$(KAFKA_PORT) --postgres $$(bash scripts/postgres.sh url) $(BENCH_ARGS)

clean: ## Remove caches and the embedded demo log (keeps .venv and the Kafka jar cache)
	rm -rf .pytest_cache .mypy_cache .ruff_cache journey.db journey.db-*

BENCH_EXPORT_ARGS ?=
bench-export: install ## `journey export` of 1M touchpoints from the embedded log beside a bare read: rate and peak RSS (docs/BENCHMARKS.md)
	$(BIN)/python -m bench.export $(BENCH_EXPORT_ARGS)
