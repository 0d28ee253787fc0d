# Two commands on a fresh machine: `make run` and `make test`. Everything they need is installed here.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install run test unit integration faults check lint format typecheck bench constraints clean

CONSTRAINTS := deploy/constraints.txt

# The runtime dependencies at the versions pinned in $(CONSTRAINTS), the same the image installs.
$(STAMP): pyproject.toml $(CONSTRAINTS)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --constraint $(CONSTRAINTS) -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## run: start nats-server + a Kafka-protocol broker on loopback, a demo topic and stream, and the bridge
run: install
	$(PY) -m bridge dev --config configs/local.yaml

## test: the whole suite against real brokers (Apache Kafka jars are fetched once into ~/.cache)
test: install
	$(PY) -m pytest

unit: install
	$(PY) -m pytest tests/unit

integration: install
	$(PY) -m pytest tests/integration

faults: install
	$(PY) -m pytest tests/faults

## bench: brokers on loopback, 1,000,000 × 200-byte records; prints a table and writes bench-results.json
bench: install
	$(PY) -m bridge bench $(BENCH_ARGS)

lint: install
	$(VENV)/bin/ruff format --check bridge bridgedev tests
	$(VENV)/bin/ruff check bridge bridgedev tests

format: install
	$(VENV)/bin/ruff format bridge bridgedev tests
	$(VENV)/bin/ruff check --fix bridge bridgedev tests

typecheck: install
	$(VENV)/bin/mypy

check: lint typecheck test

## constraints: pin the runtime dependencies at the installed (tested) versions, for the image and `install`
constraints:
	$(PY) -m bridgedev.constraints $(CONSTRAINTS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
