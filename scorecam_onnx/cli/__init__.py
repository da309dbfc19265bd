"""The `scorecam-onnx` command line: one module per command family, each a thin layer over
the Python API."""

from .main import main

__all__ = ["main"]
