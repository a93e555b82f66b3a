# One entry point for developers and CI. `make test` works on a fresh machine:
# it creates .venv, installs the project with its test extras, starts the services
# the tests need, runs the whole suite, and stops the services again.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: venv test unit lint run bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

test: $(STAMP)
	bash scripts/run-tests.sh

unit: $(STAMP)
	$(PY) -m pytest -q tests/unit tests/spec

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench
	$(VENV)/bin/mypy

run: $(STAMP)
	$(VENV)/bin/osmo standalone

bench: $(STAMP)
	$(PY) bench/spec.py

clean:
	rm -rf $(VENV) build dist src/*.egg-info
