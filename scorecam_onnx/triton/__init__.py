"""Inside Triton Inference Server: model repositories whose models run a bundle's graphs
(ONNX Runtime in Triton's Python backend, or Triton's onnxruntime backend), and an explainer
model whose masked forwards go to them through BLS."""

from .repository import write_explainer, write_repository

__all__ = ["write_explainer", "write_repository"]
