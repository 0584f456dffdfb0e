# The README is the contract: `make reproduce` regenerates every figure, `make test` runs every test.
# Each target first makes sure the project's virtual environment exists and matches pyproject.toml;
# it reinstalls only when pyproject.toml changed since the last install.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.orchlib-installed
OUT ?= results

.PHONY: venv reproduce reproduce-quick notebooks test lab bench browser-test lint clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

reproduce: $(STAMP)
	$(PY) -m orchlib reproduce --out $(OUT)

reproduce-quick: $(STAMP)
	$(PY) -m orchlib reproduce --quick --out $(OUT)/quick

# Executed copies of the notebooks (with outputs) in $(OUT)/notebooks, reusing the runs `make reproduce` cached.
notebooks: $(STAMP)
	$(PY) -m orchlib notebooks --out $(OUT)

test: $(STAMP)
	$(PY) -m pytest -n 2 --dist worksteal -m "not browser"

lab: $(STAMP)
	$(VENV)/bin/jupyter lab --ServerApp.root_dir=notebooks

bench: $(STAMP)
	$(PY) benchmarks/run_all.py

browser-test: $(STAMP)
	bash tests/browser/install_chromium.sh
	$(PY) -m pytest -m browser -p no:xdist tests/browser

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

clean:
	rm -rf $(VENV) results build .pytest_cache
