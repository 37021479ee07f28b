# make run    start all six services locally (installs into .venv on first use)
# make test   lint, type-check and run the whole test suite against the local
#             PostgreSQL and RabbitMQ (isolated: own vhost and database names): the
#             unit, integration and e2e tests on two workers, then the short chaos run
#             in each saga style on its own (its memory alarm is broker-wide)
# make chaos  the long chaos run, in each saga style (CHAOS_SAGA_MODE=orchestration or
#             choreography for one): 3 replicas of everything, longer load and
#             outages, and a real RabbitMQ stop/start (it restarts the local broker)
# make bench  the benchmark (ARGS="--help" lists its options)
# make bench-pages  the console's pages timed with 100,000 sagas stored

VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.dev-installed
PYTHON ?= $(shell command -v python3.11 || command -v python3)

.PHONY: run test lint unit integration e2e chaos bench bench-pages clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

run:
	bash scripts/run-local.sh $(ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy .

test: lint
	$(PY) -m pytest -m "not chaos" -n 2
	$(PY) -m pytest -m chaos

unit: $(STAMP)
	$(PY) -m pytest tests/unit

integration: $(STAMP)
	$(PY) -m pytest -m integration

e2e: $(STAMP)
	$(PY) -m pytest -m e2e

chaos: $(STAMP)
	CHAOS_LONG=1 CHAOS_BROKER_RESTART=1 $(PY) -m pytest -m chaos

bench: $(STAMP)
	$(PY) -m scripts.bench $(ARGS)

bench-pages: $(STAMP)
	$(PY) -m scripts.bench.pages $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
