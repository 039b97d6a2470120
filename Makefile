# Two commands do all set-up on a fresh machine with Python 3.11 and make:
#   make demo    the end-to-end demo (a writer process and a reader process on a local bus)
#   make test    the test suite, on every CPython >= 3.11 this machine has (scripts/pythons.sh)
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test bench soak install clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test,bench,bridge]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/chronicle demo

test: $(STAMP)
	@VENV=$(VENV) scripts/test_all_pythons.sh

bench: $(STAMP)
	$(PY) -m benchmarks.run --rounds 3 --memory --startup --with-hotcore
	$(PY) -m benchmarks.run --control --rounds 3
	$(PY) -m benchmarks.run --sustained --rounds 3
	$(PY) -m benchmarks.run --scaling --rounds 3
	$(PY) -m benchmarks.run --bridge --rounds 3

soak: $(STAMP)
	CHRONICLE_SOAK_SECONDS=1800 $(PY) -m pytest -q -m slow tests/stress/test_soak.py -s

clean:
	rm -rf $(VENV) .venv-3.* .demo-bus .pytest_cache
