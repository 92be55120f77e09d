# Two entry points that work on a machine with nothing but Python 3.11:
#   make demo   set up .venv, then train briefly, export int8 TFLite, benchmark, print the table
#   make test   set up .venv, then run the test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# pip's wheel cache lives outside the clone (~/.cache/pip), so a fresh clone reinstalls quickly.
PIP_FLAGS ?= --disable-pip-version-check -q

.PHONY: venv mediapipe-venv demo test clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install $(PIP_FLAGS) --upgrade pip
	$(PY) -m pip install $(PIP_FLAGS) -e '.[test]'
	@touch $(STAMP)

# MediaPipe Tasks, the real client of the standard-metadata tests (benchmarks/mediapipe_check.py), in a
# virtualenv of its own: mediapipe 1.2.3 needs absl-py ~=2.3, tensorflow-model-optimization 0.8.1 ~=1.2.
MP_VENV ?= .venv-mediapipe
MP_STAMP := $(MP_VENV)/.installed

mediapipe-venv: $(MP_STAMP)

$(MP_STAMP): benchmarks/mediapipe-requirements.txt
	@test -x $(MP_VENV)/bin/python || $(PYTHON) -m venv $(MP_VENV)
	$(MP_VENV)/bin/python -m pip install $(PIP_FLAGS) -r benchmarks/mediapipe-requirements.txt
	@touch $(MP_STAMP)

demo: venv
	$(PY) -m demo

test: venv mediapipe-venv
	$(PY) -m pytest -q -n 2 --dist loadgroup --durations=15 tests

clean:
	rm -rf $(VENV) $(MP_VENV) runs .pytest_cache
