# Two commands on a fresh machine: `make run` and `make test`. Everything they need is installed here.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install run test unit integration faults check lint format typecheck bench soak clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
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

## soak: 60 min at 2,000 records/s on one Kafka + one nats-server, restarts every few minutes; writes
## docs/soak.csv, docs/soak.png, docs/soak.json (SOAK_ARGS, e.g. --duration 10m --rate 1000)
soak: install
	$(PY) -m bridgedev soak $(SOAK_ARGS)

lint: install
	$(VENV)/bin/ruff format --check bridge bridgedev tests
	$(VENV)/bin/ruff check bridge bridgedev tests

format: install
	$(VENV)/bin/ruff format bridge bridgedev tests
	$(VENV)/bin/ruff check --fix bridge bridgedev tests

typecheck: install
	$(VENV)/bin/mypy

check: lint typecheck test

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
