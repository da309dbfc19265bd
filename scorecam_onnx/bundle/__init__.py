"""What a bundle is: the manifest, the folder and its checks, and the cutting of an ONNX
classifier into the features, model and tail graphs (or a model-only bundle, with no layer)."""

from .bundle import TAIL_NAME, WEIGHTS_NAME, Bundle
from .manifest import MANIFEST_NAME, Manifest
from .model_only import open_bundle, open_model, write_model_bundle
from .writer import Preprocessing, write_bundle

__all__ = [
    "MANIFEST_NAME",
    "TAIL_NAME",
    "WEIGHTS_NAME",
    "Bundle",
    "Manifest",
    "Preprocessing",
    "open_bundle",
    "open_model",
    "write_bundle",
    "write_model_bundle",
]
