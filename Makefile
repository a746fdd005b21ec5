# Two commands on a fresh machine with Python 3.11+: `make run` and `make test`.
# Each creates (or refreshes) the local virtualenv on first use.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PG_URL ?= postgresql://postgres@127.0.0.1:5432/test

.PHONY: run test test-postgres test-browser chromium screenshots bench clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "dealflow needs Python 3.11+, found " + sys.version.split()[0])'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

## Start the whole system on this machine (SQLite under ./var/).
run: $(STAMP)
	@echo "dealflow: the dealflow command is in $(BIN): in another terminal, run $(BIN)/dealflow watch (or source $(BIN)/activate first)"
	@echo "dealflow: every request needs a token: TOKEN=\$$($(BIN)/dealflow token --role emitter --sub crm), then curl -H \"Authorization: Bearer \$$TOKEN\" ..."
	$(BIN)/dealflow up

## Run the test suite (no external services needed; the PostgreSQL tests are skipped unless
## DEALFLOW_TEST_POSTGRES_URL is set, and `make test-postgres` runs them).
test: $(STAMP)
	@[ -n "$$DEALFLOW_TEST_POSTGRES_URL" ] || echo "dealflow: PostgreSQL tests skipped here (DEALFLOW_TEST_POSTGRES_URL unset); make test-postgres runs them"
	$(BIN)/python -m pytest

## Run the same store-backed tests against a PostgreSQL server (PG_URL).
test-postgres: $(STAMP)
	DEALFLOW_TEST_POSTGRES_URL=$(PG_URL) $(BIN)/python -m pytest -m postgres

## The browser tests (tests/browser) in headless Chromium, which is installed first where missing
## (Debian's package: Playwright's own browser download is not used). A missing browser fails them here.
test-browser: $(STAMP) chromium
	DEALFLOW_REQUIRE_BROWSER=1 $(BIN)/python -m pytest -m browser

## Debian's Chromium, installed where it is missing (as root, or through sudo).
chromium:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || { \
		echo "dealflow: installing Debian's chromium for the browser tests"; \
		SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

## The README's screenshots of the dashboard (docs/), taken in Chromium from a sample pipeline.
screenshots: $(STAMP) chromium
	$(BIN)/python -m tests.browser.screenshots docs

## Benchmarks: `make bench` (full, about 10 minutes) or `make bench ARGS=--quick` (smoke test, under two minutes);
## the HTTP scenario under wrk needs `apt-get install wrk` (skipped without it).
bench: $(STAMP)
	$(BIN)/python -m bench $(ARGS)

clean:
	rm -rf $(VENV) var .pytest_cache .hypothesis
