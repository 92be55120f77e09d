# Two entry points that work on a machine with nothing but Python 3.11:
#   make demo   set up .venv, then train briefly, export int8 TFLite, benchmark, print the table
#   make test   set up .venv, then run the test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# pip's wheel cache lives outside the clone (~/.cache/pip), so a fresh clone reinstalls quickly.
PIP_FLAGS ?= --disable-pip-version-check -q

.PHONY: venv demo test clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install $(PIP_FLAGS) --upgrade pip
	$(PY) -m pip install $(PIP_FLAGS) -e '.[test]'
	@touch $(STAMP)

demo: venv
	$(PY) -m demo

test: venv
	$(PY) -m pytest -q -n 2 --dist loadgroup --durations=15 tests

clean:
	rm -rf $(VENV) runs .pytest_cache
