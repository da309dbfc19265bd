"""PyTorch side of scorecam-onnx: turn a `torch.nn.Module` classifier into a bundle.

This is the only package of the project that imports torch. Install it with the `export`
extra; it is importable as `scorecam_onnx_export`.
"""

from .layers import LayerChoice, resolve_layer
from .models import LoadedModel, load_model
from .torch_export import ExportReport, export_bundle

__all__ = [
    "ExportReport",
    "LayerChoice",
    "LoadedModel",
    "export_bundle",
    "load_model",
    "resolve_layer",
]
