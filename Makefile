# Two commands on a fresh clone:  make demo  |  make test
# Both create (or update) the virtual environment .venv, with torch pinned by constraints.txt.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip install --disable-pip-version-check -q -c constraints.txt

.PHONY: demo test lint bench venv venv-test sysdeps clean

$(VENV)/.stamp-base: pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) --upgrade pip setuptools wheel
	$(PIP) -e .
	touch $@

$(VENV)/.stamp-test: $(VENV)/.stamp-base
	$(PIP) -e ".[test]"
	touch $@

venv: $(VENV)/.stamp-base

venv-test: $(VENV)/.stamp-test

sysdeps:
	bash scripts/install_system_deps.sh

demo: venv
	$(VENV)/bin/unet-stack demo

lint: venv-test
	$(VENV)/bin/ruff check src tests benchmarks scripts

test: venv-test sysdeps lint
	bash scripts/with_display.sh $(PY) -m pytest $(PYTEST_ARGS)

bench: venv-test
	$(PIP) -e ".[test,bench]"
	$(PY) benchmarks/run.py $(BENCH_ARGS)
	$(PY) benchmarks/bench_real.py

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .ruff_cache
