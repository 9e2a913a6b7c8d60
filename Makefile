# Two commands: `make demo` and `make test`. Each creates .venv when missing
# and installs the project into it first, so a machine needs only python3.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test run bench crash-table clean install

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

test: $(STAMP)
	$(BIN)/python -m pytest

run: $(STAMP)
	$(BIN)/clout run

bench: $(STAMP)
	$(BIN)/python bench/bench_influence.py
	$(BIN)/python bench/influence_calibration.py
	$(BIN)/python bench/rank_bench.py
	$(BIN)/python bench/complaint_eval.py
	$(BIN)/python bench/bench_priority.py
	$(BIN)/python bench/bench_pipeline.py 1000
	$(BIN)/python bench/bench_redis_fsync.py

crash-table: $(STAMP)
	$(BIN)/python bench/crash_table.py

clean:
	rm -rf $(VENV) .clout build dist *.egg-info .pytest_cache
