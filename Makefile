# Every target sets itself up: a virtual environment from requirements.txt (the hashed lock,
# installed with --require-hashes) plus requirements-dev.txt, and Azurite from
# package-lock.json. Services (Azurite, the Graph simulator, the app host) are started on free
# ports by the command that needs them and stopped after.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cat requirements.txt requirements-dev.txt | cksum | cut -d' ' -f1)
AZURITE := node_modules/.bin/azurite
PYRIGHT := node_modules/.bin/pyright

.PHONY: run test test-unit test-fast lint format bench chaos clean lock

# What the app runs, every transitive package included, is installed from the lock alone and
# checked against its hashes; the development tools come after, on top.
$(STAMP): requirements.txt requirements-dev.txt
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is required, found " + sys.version.split()[0]'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check --require-hashes -r requirements.txt
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	rm -f $(VENV)/.installed-* && touch $@

# ---- begin: the dependency lock ----
# requirements.in lists the app's direct packages; requirements.txt is the lock generated from
# it: every package the app runs, transitive ones included, pinned with the hashes of all its
# published files. pip enters hash-checking mode for a file with hashes, so the Flex
# Consumption remote build (pip install -r requirements.txt) verifies them too. Resolved once
# for every platform (--universal) and for the Python the app runs on in Azure (3.11).
# LOCK_ARGS passes options, e.g. `make lock LOCK_ARGS=--upgrade` to take newer releases.
UV_VERSION := 0.9.5
LOCK_VENV  := .venv-lock
LOCK_ARGS  ?=
lock:
	test -x $(LOCK_VENV)/bin/uv || { $(PYTHON) -m venv $(LOCK_VENV) && \
		$(LOCK_VENV)/bin/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION); }
	$(LOCK_VENV)/bin/uv pip compile --quiet --universal --python-version 3.11 --generate-hashes \
		--custom-compile-command "make lock" $(LOCK_ARGS) requirements.in -o requirements.txt
# ---- end: the dependency lock ----

$(AZURITE): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# ---- begin: extra virtual environments for tests/integration/test_infra.py and tests/integration/test_worker_index.py ----
# checkov pins an older pycep-parser than .venv's (one that cannot parse Bicep `extension`
# declarations), and the Functions worker for Python 3.13 (PyPI azure-functions-runtime, with
# azure-functions 2.x) needs Python 3.13: each gets its own virtual environment, pinned, with a
# stamp file like .venv. Without a Python 3.13 (python3.13 on PATH, or a 3.13 that pyenv has
# installed) .venv-py313 is left out and tests/integration/test_worker_index.py skips, saying why.
CHECKOV_VERSION           := 3.3.30
FUNCTIONS_RUNTIME_VERSION := 1.3.0
AZURE_FUNCTIONS_2_VERSION := 2.3.0
CHECKOV_VENV  := .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed-$(CHECKOV_VERSION)
PY313_VENV    := .venv-py313
PY313_STAMP   := $(PY313_VENV)/.installed-$(shell cat requirements.in | cksum | cut -d' ' -f1)-$(FUNCTIONS_RUNTIME_VERSION)-$(AZURE_FUNCTIONS_2_VERSION)
# Prints a command that runs Python 3.13, or nothing: `python3.13` if that works as it is,
# else `env PYENV_VERSION=<newest 3.13.x> python3.13` when pyenv has a 3.13 installed.
FIND_PYTHON313 = if python3.13 -c '' >/dev/null 2>&1; then echo python3.13; \
	elif command -v pyenv >/dev/null 2>&1; then \
	v=$$(pyenv versions --bare 2>/dev/null | grep -E '^3\.13\.[0-9]+$$' | sort -t. -k3,3n | tail -n 1); \
	if [ -n "$$v" ]; then echo "env PYENV_VERSION=$$v python3.13"; fi; fi

.PHONY: clean-extra-venvs

$(CHECKOV_STAMP):
	test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --disable-pip-version-check checkov==$(CHECKOV_VERSION)
	rm -f $(CHECKOV_VENV)/.installed-* && touch $@

# The app's direct packages (requirements.in: the lock's hashes pin azure-functions 1.x, which
# this venv replaces) minus the azure-functions 1.x pin, plus azure-functions 2.x (3.13+).
$(PY313_STAMP): requirements.in
	@py="$$($(FIND_PYTHON313))"; \
	if [ -z "$$py" ]; then \
		echo "No Python 3.13 found (python3.13 on PATH, or via pyenv): tests/integration/test_worker_index.py will skip."; \
		exit 0; \
	fi; \
	set -ex; \
	test -x $(PY313_VENV)/bin/python || $$py -m venv $(PY313_VENV); \
	grep -viE '^azure-functions([<>=!~ ;[]|$$)' requirements.in > $(PY313_VENV)/requirements-313.txt; \
	$(PY313_VENV)/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip; \
	$(PY313_VENV)/bin/python -m pip install --quiet --disable-pip-version-check \
		-r $(PY313_VENV)/requirements-313.txt \
		azure-functions==$(AZURE_FUNCTIONS_2_VERSION) azure-functions-runtime==$(FUNCTIONS_RUNTIME_VERSION); \
	rm -f $(PY313_VENV)/.installed-* && touch $@

clean-extra-venvs:
	rm -rf $(CHECKOV_VENV) $(PY313_VENV)
# ---- end: extra virtual environments ----

# Headless Chromium (Debian package `chromium`) for tests/integration/test_analytics_tables.py, which looks
# at the HTML quality report. Installed with apt-get when missing and run as root; otherwise
# that test skips, saying why. Nothing happens when it is already there.
.PHONY: chromium
chromium:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	{ [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } || \
	echo "chromium is not installed (needs root and apt-get): the HTML report test will skip"

# A headless Java runtime (Debian package `default-jre-headless`, Java 17 on Debian 12) for
# tests/integration/test_analytics_spark.py, which runs the report's Spark SQL with PySpark in
# local mode (PySpark 4 needs Java 17 or later). Installed with apt-get when missing and run as
# root; otherwise that test skips, saying why. Nothing happens when java is already there.
.PHONY: java
java: chromium
	@command -v java >/dev/null 2>&1 || \
	{ [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq default-jre-headless; } || \
	echo "java is not installed (needs root and apt-get): the Spark test will skip"

## make run: Azurite + Graph simulator (playing a tenant) + the app, until Ctrl-C.
run: $(STAMP) $(AZURITE)
	$(PY) -m devtools.run

## make test: lint and type check, then every test (unit, functional, integration, end to end).
## The set-up steps are independent, so they run side by side (the two apt-get steps one after
## the other: dpkg takes one lock). The tests run in TEST_WORKERS pytest-xdist processes, each
## with its own Azurite and simulator: most of an integration test's time is spent waiting
## (Graph's scaled retries, host polling), not on the CPU, so four share two cores well.
TEST_WORKERS ?= 4
test:
	$(MAKE) --no-print-directory -j4 --output-sync=target lint $(CHECKOV_STAMP) $(PY313_STAMP) chromium java
	$(PY) -m pytest -n $(TEST_WORKERS)

## make test-unit: the unit tests alone (no Azurite, no simulator, no extra venvs): seconds.
test-unit: $(STAMP)
	$(PY) -m pytest tests/unit

## make test-fast: unit + functional (the domain against in-memory ports, tests/fakes/): no
## Azurite, no simulator, no subprocess; well under 30 s.
test-fast: $(STAMP)
	$(PY) -m pytest tests/unit tests/functional

# ---- begin: bench (owned by bench/; see bench/README.md) ----
# make bench: every performance figure beside its floor or target, on loopback (Azurite, the
# Graph simulator, devtools.host on free ports). Markdown table to stdout, all details to
# bench/results/<timestamp>.json. BENCH_ARGS passes options: --quick, --only PART, --profile.
BENCH_ARGS ?=
bench: $(STAMP) $(AZURITE)
	$(PY) -m bench $(BENCH_ARGS)
# ---- end: bench ----

## make chaos: 1,000 notifications for 300 records under Graph faults, a storage outage and a
## killed host; prints the figures and fails if a record was lost or duplicated.
chaos: $(STAMP) $(AZURITE)
	$(PY) -m devtools.chaos

lint: $(STAMP) $(AZURITE)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(VENV)/bin/lint-imports
	$(PYRIGHT)

format: $(STAMP)
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

clean:
	rm -rf $(VENV) $(LOCK_VENV) node_modules .pytest_cache .ruff_cache
