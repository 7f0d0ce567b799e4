# The two commands of the README's quick start, plus the checks a developer runs before committing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: run test soak bench lint clean-state

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)  ## the embedded stack, a worker and a demo transfer; Ctrl-C stops everything
	$(BIN)/tpt dev --demo

test: $(STAMP)  ## the whole suite against real Temporal servers and real Postgres
	$(BIN)/pytest $(PYTEST_ARGS)

soak: $(STAMP)  ## the long reliability variant: 500 transfers, 12 worker kills, 3 server restarts (about an hour)
	TPT_RELIABILITY_SOAK=1 $(BIN)/pytest tests/reliability $(PYTEST_ARGS)

bench: $(STAMP)  ## every `tpt bench` scenario at its default size beside its baseline (under 10 min): a table, and JSON
	mkdir -p test-output
	$(BIN)/tpt bench --json test-output/bench.json

lint: $(STAMP)
	$(BIN)/ruff check tpt workflows activities workers deploy tests
	$(BIN)/mypy tpt workflows activities workers

clean-state:  ## forget every transfer of the local stack (Temporal SQLite file and embedded Postgres data)
	rm -rf $${TPT_STATE_DIR:-$$HOME/.local/state/tpt}
