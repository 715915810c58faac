# Two commands do the whole set-up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
NB := $(BIN)/newsbroadcast
STAMP := $(VENV)/.installed

# A development-only secret so the demo runs out of the box; set your own in production.
export NEWSBROADCAST_SECRET ?= dev-only-secret-change-me

.PHONY: run test lint venv clean schema

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(NB) subscribers import examples/subscribers.csv --quiet
	$(NB) run

# mypy reads its settings (files, plugins, strictness) from pyproject.toml [tool.mypy].
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The config's JSON Schema for editors; a test fails when the committed copy is stale.
schema: $(STAMP)
	$(NB) config schema --out config/newsbroadcast.schema.json

clean:
	rm -rf var/ .pytest_cache
