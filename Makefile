# Set-up and everyday commands. A fresh machine needs only Python 3.11+ and make.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean

# Explain the sample photos with the shipped EfficientNet-Lite0 bundle.
demo: $(STAMP)
	$(BIN)/scorecam-onnx explain samples/ --out out --sheet

# The test suite (the same command CI runs).
test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	$(BIN)/scorecam-onnx bench samples/chelsea.png

# torch==2.13.0 is a CPU build that pip takes from the local disk; any other torch
# requirement would download a multi-GB CUDA build.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e ".[cpu,export,serve,test]"
	touch $(STAMP)

clean:
	rm -rf $(VENV) out
