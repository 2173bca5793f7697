# region phone-sync: every command a developer or operator needs, in one place.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DIST   ?= dist

.PHONY: help install lock test test-fast lint check-regions demo standalone wheel bench bench-quick clean

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-14s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

# requirements.lock pins every package (runtime, celery and dev extras); the project goes on top, editable,
# without letting pip resolve anything else. pip check fails when pyproject.toml needs what the lock lacks.
$(STAMP): requirements.lock pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "region phone-sync needs Python 3.11+, and $(PYTHON) is Python " + sys.version.split()[0] + ": run make PYTHON=python3.11 (or newer)")'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.lock
	$(PY) -m pip install --quiet --no-deps -e .
	$(PY) -m pip check
	touch $(STAMP)

install: $(STAMP) ## Create .venv from requirements.lock, plus this project (editable)

# uv keeps every pin of the current lock that still fits; LOCK_FLAGS="--upgrade-package NAME" moves one.
lock: $(STAMP) ## Regenerate requirements.lock from pyproject.toml (uv pip compile)
	$(VENV)/bin/uv pip compile pyproject.toml --extra celery --extra dev --python-version 3.11.7 \
		--python-platform linux --custom-compile-command "make lock" $(LOCK_FLAGS) -o requirements.lock

# -n auto: one pytest worker per CPU (pytest-xdist); --dist loadfile keeps a module's tests, and the Airflow
# deployment its module fixture starts, on one worker.
PYTEST_WORKERS ?= -n auto --dist loadfile

test: $(STAMP) ## Lint, then run the whole test suite (one worker per CPU)
	$(VENV)/bin/ruff check .
	$(PY) -m pytest $(PYTEST_WORKERS)

test-fast: $(STAMP) ## Lint, then the tests that run no Airflow (unit, HTTP, local servers): the inner loop
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -m "not slow and not e2e" -q $(PYTEST_WORKERS)

lint: $(STAMP) ## ruff, as make test runs it
	$(VENV)/bin/ruff check .

check-regions: $(STAMP) ## Validate every region file and print every problem
	$(PY) -m phone_sync.check_regions

demo: $(STAMP) ## Run the demo region's DAG on local servers and print the report (ARGS=--keep-running: keep them up)
	$(PY) -m localservers.demo $(ARGS)

standalone: $(STAMP) ## The demo region in the Airflow UI on http://127.0.0.1:8080 (ARGS="--port 8081")
	$(PY) -m localservers.standalone $(ARGS)

wheel: $(STAMP) ## Build dist/region_phone_sync-<version>-py3-none-any.whl for your own Airflow (docs/install.md)
	$(PY) -m pip wheel --no-deps --no-build-isolation --wheel-dir $(DIST) .

bench: $(STAMP) ## Benchmark vs the article's per-row loop, side by side, scheduler stages three times (~85 min); not part of `make test`
	$(PY) -m bench.run --publish --repeat 3

bench-quick: $(STAMP) ## The benchmark on 1,000 rows (~4 min); rewrites nothing that is committed
	$(PY) -m bench.run --quick

clean: ## Remove var/, dist/ and the tool caches (not .venv)
	rm -rf var dist .pytest_cache .ruff_cache
