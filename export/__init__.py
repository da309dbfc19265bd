"""PyTorch side of scorecam-onnx: turn a `torch.nn.Module` classifier into a bundle.

This is the only package of the project that imports torch. Install it with the `export`
extra; it is importable as `scorecam_onnx_export`.
"""

from .layers import LayerChoice, resolve_layer
from .torch_export import ExportReport, export_bundle, load_model

__all__ = ["ExportReport", "LayerChoice", "export_bundle", "load_model", "resolve_layer"]
