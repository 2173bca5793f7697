# region phone-sync: every command a developer or operator needs, in one place.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install test lint check-regions demo standalone bench bench-quick clean

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

install: $(STAMP) ## Create .venv and install the pinned requirements

test: $(STAMP) ## Lint, then run the whole test suite
	$(VENV)/bin/ruff check .
	$(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check .

check-regions: $(STAMP) ## Validate every region file and print every problem
	$(PY) -m phone_sync.check_regions

demo: $(STAMP) ## Run the demo region's DAG on local servers (SQLite Airflow home in var/demo) and print the report
	$(PY) -m localservers.demo

standalone: $(STAMP) ## The demo region in the Airflow UI on http://localhost:8080 (airflow standalone)
	$(PY) -m localservers.standalone

bench: $(STAMP) ## Benchmark vs the article's per-row loop, side by side (~8 min); not part of `make test`
	$(PY) -m bench.run --publish

bench-quick: $(STAMP) ## The benchmark on 1,000 rows (~4 min); rewrites nothing that is committed
	$(PY) -m bench.run --quick

clean:
	rm -rf var .pytest_cache .ruff_cache
