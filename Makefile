# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export DAGSTER_HOME := $(abspath .dagster_home)
export DAGSTER_DISABLE_TELEMETRY := 1
DEMO_DATA := data/sample
DEMO_MONTHS := 2024-01-01 2024-02-01 2024-03-01

.PHONY: demo test lint typecheck pytest golden ui ui-postgres bench venv clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -e '.[dev,postgres]'
	touch $(STAMP)

venv: $(STAMP)

$(DAGSTER_HOME)/dagster.yaml: dagster.yaml
	mkdir -p $(DAGSTER_HOME)
	cp dagster.yaml $(DAGSTER_HOME)/dagster.yaml

demo: $(STAMP) $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/ml4t-pipeline sample-data --out $(DEMO_DATA) --assets 60 --days 90 --start 2024-01-01 --scenario mixed --seed 2
	$(BIN)/ml4t-pipeline demo --data-dir $(DEMO_DATA)
	@echo "Open the UI with: make ui   (http://127.0.0.1:3000)"

ui: $(STAMP) $(DAGSTER_HOME)/dagster.yaml
	ML4T_DATA_DIR=$(abspath $(DEMO_DATA)) $(BIN)/dg dev -h 127.0.0.1 -p 3000

# The team setup on one machine: a throwaway PostgreSQL (initdb + pg_ctl in a temporary
# folder, 127.0.0.1 only) and `dg dev` over deploy/dagster.postgres.yaml; Ctrl-C stops both
# and removes the database. Needs Debian's `postgresql` package (apt-get install postgresql).
ui-postgres: $(STAMP)
	ML4T_DATA_DIR=$(abspath $(DEMO_DATA)) $(BIN)/python -m ml4t_pipeline.pipeline.local_postgres \
		-- $(BIN)/dg dev -h 127.0.0.1 -p 3000

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

# Test modules spread over the cores (pytest-xdist; a module's tests stay on one worker, so a
# module-scoped fixture such as the UI backfill runs once): 654 s -> 394 s on 2 cores.
pytest: $(STAMP)
	$(BIN)/pytest -q -n auto --dist loadscope

test: lint typecheck pytest

# Rewrite the stored golden outputs (tests/golden/expected/) from the current engine; `make test`
# compares every case against them byte for byte. Review `git diff --stat tests/golden` after.
golden: $(STAMP)
	$(BIN)/pytest -q tests/golden --regen-golden

bench: $(STAMP)
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) data results .mypy_cache .ruff_cache .pytest_cache
