# oddeye: `make demo` runs everything end to end; `make test` runs the tests. Both create .venv if needed.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
DEMO_OUT ?= oddeye-demo

.PHONY: demo test install clean help

help:
	@echo "make demo   - create .venv, install, run oddeye end to end on generated data"
	@echo "make test   - create .venv, install, run the test suite"

$(BIN)/python:
	$(PY) -m venv $(VENV)

$(STAMP): pyproject.toml scripts/system-deps.sh | $(BIN)/python
	bash scripts/system-deps.sh
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/oddeye demo --out $(DEMO_OUT)

test: $(STAMP)
	bash scripts/system-deps.sh --test
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache
