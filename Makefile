# callwatch: the two quick-start commands are `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
export HF_HUB_OFFLINE := 1

.PHONY: install dev demo audit-demo test lint typecheck check demo-calls clean

$(BIN)/python:
	$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "callwatch needs Python 3.11")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python requirements.lock requirements-nodeps.lock pyproject.toml
	$(BIN)/pip install --quiet -r requirements.lock
	$(BIN)/pip install --quiet --no-deps -r requirements-nodeps.lock
	$(BIN)/pip install --quiet --no-deps -e .
	touch $@

$(VENV)/.dev-installed: $(VENV)/.installed requirements-dev.lock
	$(BIN)/pip install --quiet -r requirements-dev.lock
	touch $@

install: $(VENV)/.installed
dev: $(VENV)/.dev-installed

## Start a live server and replay the three demo calls into it (Twilio, AudioHook, raw).
demo: install
	$(BIN)/callwatch demo

## Audit the bundled demo calls offline and print the report.
audit-demo: install
	$(BIN)/callwatch audit demo/calls/clean_call.wav demo/calls/breach_call.wav demo/calls/cancel_call.wav

## Install everything and run the whole test suite.
test: dev
	$(BIN)/python -m pytest

lint: dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: dev
	$(BIN)/mypy assist audio models qa_rules dashboard bench scripts

check: lint typecheck test

## Regenerate the demo calls (needs festival, festvox-us-slt-hts, festvox-kallpc16k, sox).
demo-calls: install
	$(BIN)/python scripts/make_demo_calls.py --out demo/calls

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
