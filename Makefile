# Two entry points that work on a machine with nothing but Python 3.11:
#   make demo   set up .venv, then train briefly, export int8 TFLite, benchmark, print the table
#   make test   set up .venv, then run the test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
WEB_NPM_STAMP := web_demo/node_modules/.installed
# pip's wheel cache lives outside the clone (~/.cache/pip), so a fresh clone reinstalls quickly.
PIP_FLAGS ?= --disable-pip-version-check -q

.PHONY: venv mediapipe-venv arm-env runtime-wheel arm-runtime-check demo test test-onednn-other clean web-demo web-test web-test-chromium

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

# LiteRT's ARM64 build under qemu-user (inference/arm.py): Debian's ARM64 CPython and the aarch64
# ai-edge-litert wheel, unpacked into .arm-env/ (inference/arm_env.py). Needs qemu-user-static 10+ and
# dpkg's arm64 architecture with apt lists for it, which .ci/system-packages sets up; without them it says
# what is missing, and writes why into $(ARM_ENV)/build-error.txt, which the ARM64 tests quote.
ARM_ENV ?= .arm-env
ARM_STAMP := $(ARM_ENV)/manifest.json

arm-env: $(ARM_STAMP)

$(ARM_STAMP): pyproject.toml inference/arm_env.py $(STAMP)
	$(PY) -m inference.arm_env --out $(ARM_ENV) --force

# The runtime that apps and boards install (docs/runtime.md): the package ksac_runtime/ alone as the wheel
# ksac-runtime (numpy, ai-edge-litert, flatbuffers, opencv-python-headless), built from a copy of the package,
# its own pyproject (ksac-runtime/pyproject.toml) and docs/runtime.md as its README, into $(RUNTIME_DIST)/.
RUNTIME_DIST ?= dist
RUNTIME_BUILD ?= build/ksac-runtime
RUNTIME_VERSION := $(shell sed -n 's/^__version__ = "\(.*\)"$$/\1/p' ksac_runtime/__init__.py)
RUNTIME_WHEEL := $(RUNTIME_DIST)/ksac_runtime-$(RUNTIME_VERSION)-py3-none-any.whl

runtime-wheel: $(RUNTIME_WHEEL)

$(RUNTIME_WHEEL): $(STAMP) ksac-runtime/pyproject.toml docs/runtime.md $(wildcard ksac_runtime/*.py ksac_runtime/*.json)
	rm -rf $(RUNTIME_BUILD) && mkdir -p $(RUNTIME_BUILD)/ksac_runtime $(RUNTIME_DIST)
	cp ksac-runtime/pyproject.toml $(RUNTIME_BUILD)/
	cp docs/runtime.md $(RUNTIME_BUILD)/README.md
	cp ksac_runtime/*.py ksac_runtime/*.json $(RUNTIME_BUILD)/ksac_runtime/
	$(PY) -m pip wheel $(PIP_FLAGS) --no-deps --no-build-isolation -w $(RUNTIME_DIST) $(RUNTIME_BUILD)
	@ls -l $(RUNTIME_WHEEL)

# The wheel on LiteRT's ARM64 kernels: installed with the aarch64 wheels of its requirements into
# $(ARM_ENV)/runtime/ and `ksac-segment` run there under qemu-user on the test images, against the toolkit's
# labels here (benchmarks/runtime_check.py: int8 equal, fp32 within inference.arm's bound).
arm-runtime-check: $(RUNTIME_WHEEL) arm-env
	KSAC_ARM_ENV=$(abspath $(ARM_ENV)) $(PY) -m benchmarks.runtime_check --wheel $(RUNTIME_WHEEL) --arm --no-venv

demo: venv
	$(PY) -m demo

# The web demo's npm packages (Ajv, for the description-schema test) where npm exists; without Node
# that test says it skipped and why.
# The ARM64 environment is built first where qemu-user is installed, but a failed build (qemu older than 10,
# no dpkg arm64 architecture, no package registry) does not stop the suite: the ARM64 tests fail quoting
# the reason the build recorded. KSAC_ARM_ENV points them at $(ARM_ENV).
# TESTS: the files or folders to run, e.g. `make test TESTS=tests/test_inference_arm.py` (default: all).
TESTS ?= tests

test: venv mediapipe-venv $(if $(shell command -v npm),$(WEB_NPM_STAMP))
	@if command -v qemu-aarch64-static >/dev/null; then \
	  $(MAKE) --no-print-directory arm-env || echo "make test: no ARM64 environment in $(ARM_ENV) (the reason is above); the ARM64 tests will fail quoting it, the others run" >&2; \
	fi
	KSAC_ARM_ENV=$(abspath $(ARM_ENV)) $(PY) -m pytest -q -n 2 --dist loadgroup --durations=15 $(TESTS)

# The tests that train (marked `trains`) once more with oneDNN the other way round from this machine's
# default: TensorFlow turns oneDNN on by default on AVX-512-class x86 only, and the dilated-conv gradient
# exists only there (zoo/atrous.py), so each CPU kind exercises a different path. The probe asks TensorFlow
# itself (with TF_ENABLE_ONEDNN_OPTS unset) which path is this machine's default.
test-onednn-other: venv
	@other=$$(env -u TF_ENABLE_ONEDNN_OPTS TF_CPP_MIN_LOG_LEVEL=3 $(PY) -c \
	  'from zoo.atrous import native_gradient_works; print(0 if native_gradient_works() else 1)') || exit 1; \
	echo "tests marked 'trains' with TF_ENABLE_ONEDNN_OPTS=$$other (this machine's default is the other setting)"; \
	TF_ENABLE_ONEDNN_OPTS=$$other $(PY) -m pytest -q -n 2 --dist loadgroup --durations=10 -m trains tests

clean:
	rm -rf $(VENV) $(MP_VENV) $(ARM_ENV) $(ARM_ENV).partial runs .pytest_cache $(RUNTIME_BUILD) $(RUNTIME_WHEEL)

# The web demo (web_demo/, issue 15): the exported .tflite in the browser with MediaPipe Tasks'
# ImageSegmenter (WASM CPU), npm packages pinned in web_demo/package-lock.json, served from web_demo/.
#   make web-demo [MODEL=FILE]  copies MODEL (default: the newest runs/**/model_int8.tflite) to
#                               web_demo/model.tflite and serves the page on http://127.0.0.1:$(WEB_PORT)/
#   make web-test               headless Chromium (Debian's) vs the Python LiteRT prediction, asserted
WEB_PORT ?= 8000
WEB_OUT ?= web_demo/test-output
CHROMIUM ?= /usr/bin/chromium

$(WEB_NPM_STAMP): web_demo/package.json web_demo/package-lock.json
	@command -v npm >/dev/null || { echo "web demo: needs Node.js 20+ and npm (playwright-core 1.65 needs Node 20)" >&2; exit 1; }
	cd web_demo && npm ci --no-audit --no-fund --loglevel=error
	@touch $(WEB_NPM_STAMP)

web-demo: $(WEB_NPM_STAMP)
	@model="$(MODEL)"; \
	if [ -z "$$model" ]; then \
	  model=$$(find runs -name model_int8.tflite -printf '%T@ %p\n' 2>/dev/null | sort -n | tail -n 1 | cut -d' ' -f2-); \
	fi; \
	if [ -z "$$model" ]; then \
	  echo "make web-demo: no model to show: no runs/**/model_int8.tflite and no MODEL=FILE." >&2; \
	  echo "  Make one with 'make demo' (trains briefly, exports runs/demo/.../model_int8.tflite)" >&2; \
	  echo "  or 'python convert/to_tflite.py --int8' (exports runs/latest/model.keras), or pass MODEL=path/to/file.tflite." >&2; \
	  exit 1; \
	fi; \
	test -f "$$model" || { echo "make web-demo: MODEL=$$model: no such file" >&2; exit 1; }; \
	cp "$$model" web_demo/model.tflite; \
	echo "web demo: $$model -> web_demo/model.tflite"; \
	echo "web demo: open http://127.0.0.1:$(WEB_PORT)/  (Ctrl-C stops the server)"; \
	exec python3 -m http.server $(WEB_PORT) --bind 127.0.0.1 -d web_demo

# Chromium is a system package: .ci/system-packages installs it in CI; a test target installs nothing.
# Checked first, before the virtualenv and npm packages are built.
web-test-chromium:
	@[ -x "$(CHROMIUM)" ] || { \
	  echo "make web-test: no Chromium at $(CHROMIUM) (CHROMIUM=PATH names another one)." >&2; \
	  echo "  Install Debian's: sudo apt-get install chromium  (in CI, .ci/system-packages does)." >&2; \
	  exit 1; }

web-test: web-test-chromium venv $(WEB_NPM_STAMP)
	$(PY) web_demo/tests/reference.py --out $(WEB_OUT)/fixtures
	CHROMIUM=$(CHROMIUM) node web_demo/tests/web_test.mjs --fixtures $(WEB_OUT)/fixtures --out $(WEB_OUT) $(WEB_TEST_ARGS)
