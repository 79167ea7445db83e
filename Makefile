# Every target sets itself up: a virtual environment from requirements-dev.txt and
# Azurite from package-lock.json. Services (Azurite, the Graph simulator, the app
# host) are started on free ports by the command that needs them and stopped after.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cat requirements.txt requirements-dev.txt | cksum | cut -d' ' -f1)
AZURITE := node_modules/.bin/azurite

.PHONY: run test lint format bench chaos clean

$(STAMP): requirements.txt requirements-dev.txt
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is required, found " + sys.version.split()[0]'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	rm -f $(VENV)/.installed-* && touch $@

$(AZURITE): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

## make run: Azurite + Graph simulator (playing a tenant) + the app, until Ctrl-C.
run: $(STAMP) $(AZURITE)
	$(PY) -m devtools.run

## make test: lint, then every test (unit, Azurite integration, end to end).
test: $(STAMP) $(AZURITE)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m pytest

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: $(STAMP)
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

clean:
	rm -rf $(VENV) node_modules .pytest_cache .ruff_cache
