# Two commands: `make demo` and `make test`. Each creates .venv when missing
# and installs the project into it first, so a machine needs only python3.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test run bench bench-deps crash-table clean install browser-deps

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade "pip>=23.1"
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	@touch $(STAMP)

# `make demo DESK=salesforce`: the same story against a local stand-in Salesforce org.
DESK ?= generic
demo: $(STAMP)
	$(BIN)/clout demo --desk $(DESK)

test: $(STAMP) browser-deps
	$(BIN)/python -m pytest

# tests/test_browser.py drives Debian's headless Chromium through chromium-driver (Selenium,
# from the `test` extra). Installed here when missing: apt-get as root; otherwise a loud
# warning, and those tests skip saying what is missing. Nothing is fetched at test time.
browser-deps: $(STAMP)
	@$(BIN)/python -c "import selenium" 2>/dev/null || \
	  $(BIN)/python -m pip install --quiet --disable-pip-version-check "selenium>=4.10"
	@if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "Installing chromium and chromium-driver for the browser tests (apt-get)"; \
	    export DEBIAN_FRONTEND=noninteractive; \
	    apt-get install -y --no-install-recommends chromium chromium-driver >/dev/null || \
	    { apt-get update >/dev/null && apt-get install -y --no-install-recommends chromium chromium-driver >/dev/null; } || \
	    echo "WARNING: could not install chromium/chromium-driver: the browser tests will be SKIPPED" >&2; \
	  else \
	    echo "WARNING: /usr/bin/chromium or /usr/bin/chromedriver is missing and this is not root:" \
	         "run 'sudo apt-get install chromium chromium-driver' or the browser tests are SKIPPED" >&2; \
	  fi; \
	fi

run: $(STAMP)
	$(BIN)/clout run

# bench/ingest_bench.py drives the webhook with wrk (Debian's `wrk`) when it is installed, and with
# a bounded multi-process Python generator otherwise. Installed here when missing and root.
bench-deps:
	@if ! command -v wrk >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "Installing wrk for bench/ingest_bench.py (apt-get)"; \
	    export DEBIAN_FRONTEND=noninteractive; \
	    apt-get install -y --no-install-recommends wrk >/dev/null 2>&1 || \
	    { apt-get update >/dev/null 2>&1 && apt-get install -y --no-install-recommends wrk >/dev/null 2>&1; } || \
	    echo "NOTE: could not install wrk: ingest_bench uses its Python load generator" >&2; \
	  else \
	    echo "NOTE: wrk is not installed ('sudo apt-get install wrk'): ingest_bench uses its Python load generator" >&2; \
	  fi; \
	fi

bench: $(STAMP) bench-deps
	$(BIN)/python bench/bench_influence.py
	$(BIN)/python bench/influence_calibration.py
	$(BIN)/python bench/rank_bench.py
	$(BIN)/python bench/complaint_eval.py
	$(BIN)/python bench/bench_priority.py
	$(BIN)/python bench/ingest_bench.py
	$(BIN)/python bench/pipeline_bench.py
	$(BIN)/python bench/bench_redis_fsync.py

crash-table: $(STAMP)
	$(BIN)/python bench/crash_table.py

clean:
	rm -rf $(VENV) .clout build dist *.egg-info .pytest_cache
