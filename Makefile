# Two commands on a fresh machine: `make up` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: up test lint format bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Reinstall only when pyproject.toml changes.
$(VENV)/.installed-run: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --disable-pip-version-check -q -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --disable-pip-version-check -q -e '.[test]'
	touch $@ $(VENV)/.installed-run

## Start NATS + the seven engines + the gateway, print the dashboard URL (Ctrl-C stops).
up: $(VENV)/.installed-run
	exec $(BIN)/aoc up

## Lint, then every test against a real nats-server (the dashboard in Debian's Chromium, syslog sinks against Debian's rsyslog). pytest's exit 5 (no tests) fails loudly.
test: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	scripts/ensure-chromium.sh
	scripts/ensure-rsyslog.sh
	@$(BIN)/python -m pytest; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: the suite is missing" >&2; fi; \
	exit $$rc

lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

format:
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

## Benchmarks (not timed tests): see docs/performance.md.
bench: $(VENV)/.installed-test
	$(BIN)/python bench/replay.py
	$(BIN)/python bench/control.py
	$(BIN)/python bench/factory.py
	$(BIN)/python bench/soc.py
	$(BIN)/python bench/ops.py
	$(BIN)/python bench/siem.py
	$(BIN)/python bench/failover.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
