"""Inside Triton Inference Server: model repositories whose models run a bundle's graphs
(ONNX Runtime in Triton's Python backend, or Triton's onnxruntime backend)."""

from .repository import write_repository

__all__ = ["write_repository"]
