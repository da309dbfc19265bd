# Set-up and everyday commands. A fresh machine needs only Python 3.11+ and make.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
OV := .venv-openvino
OV_STAMP := $(OV)/.installed
TRITON := .venv-triton
TRITON_STAMP := $(TRITON)/.installed
MLSERVER := .venv-mlserver
MLSERVER_STAMP := $(MLSERVER)/.installed

.PHONY: demo test lint types docs docs-serve bench load-bench browser clean

# Explain the sample photos with the shipped EfficientNet-Lite0 bundle.
demo: $(STAMP)
	$(BIN)/scorecam-onnx explain samples/ --out out --sheet

# The test suite (the same command CI runs): lint and format checks, the type checker, the
# documentation site's strict build, the OpenVINO provider's tests in an environment of their
# own (onnxruntime-openvino replaces onnxruntime), then everything else (the examples of the
# README and the site included); the remote tests start the Triton Inference Server of
# .venv-triton, the MLServer tests .venv-mlserver.
test: lint types docs $(OV_STAMP) $(TRITON_STAMP) $(MLSERVER_STAMP) browser
	$(OV)/bin/python -m pytest -q -p no:cacheprovider -m openvino tests/test_openvino.py
	$(BIN)/python -m pytest -q

# Debian's headless Chromium for the page's browser test, installed when missing (as root);
# elsewhere that test is skipped, except on CI where it fails.
browser:
	@if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null; \
	  else echo "note: install Debian's chromium and chromium-driver for the browser test"; fi; \
	fi

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

types: $(STAMP)
	$(BIN)/mypy

# The documentation site, built offline into site/ (warnings are errors); docs-serve previews
# it at http://127.0.0.1:8000/ and rebuilds on every change.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

docs-serve: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve --dev-addr 127.0.0.1:8000

bench: $(STAMP)
	$(BIN)/scorecam-onnx bench samples/chelsea.png

# The service under load on loopback (locust, headless, bounded in time).
load-bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[cpu,serve,bench]"
	$(BIN)/python scripts/load_bench.py

# torch==2.13.0 is a CPU build that pip takes from the local disk; any other torch
# requirement would download a multi-GB CUDA build.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e ".[cpu,export,serve,ray,quantize,remote,metrics,docs,dicom,tiff,test]"
	touch $(STAMP)

$(OV_STAMP): pyproject.toml
	$(PYTHON) -m venv $(OV)
	$(OV)/bin/python -m pip install --quiet --upgrade pip
	$(OV)/bin/python -m pip install --quiet -e ".[openvino]" "pytest>=8"
	touch $(OV_STAMP)

# Triton Inference Server from PyPI (nvidia-pytriton ships tritonserver and its Python
# backend): the Python its stub runs needs numpy < 2 (hence OpenCV < 4.12), ONNX Runtime, and
# this package for the explainer model.
$(TRITON_STAMP): pyproject.toml
	$(PYTHON) -m venv $(TRITON)
	$(TRITON)/bin/python -m pip install --quiet --upgrade pip
	$(TRITON)/bin/python -m pip install --quiet "nvidia-pytriton>=0.5" "numpy<2" \
	  "opencv-python-headless<4.12" -e ".[cpu,triton,dicom]"
	touch $(TRITON_STAMP)

# Seldon MLServer, whose pins clash with Ray Serve's: the tests start `mlserver` from here.
$(MLSERVER_STAMP): pyproject.toml
	$(PYTHON) -m venv $(MLSERVER)
	$(MLSERVER)/bin/python -m pip install --quiet --upgrade pip
	$(MLSERVER)/bin/python -m pip install --quiet -e ".[cpu,mlserver,remote]"
	touch $(MLSERVER_STAMP)

clean:
	rm -rf $(VENV) $(OV) $(TRITON) $(MLSERVER) out site
