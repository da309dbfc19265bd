"""What a bundle is: the manifest, the folder and its checks, and the cutting of an ONNX
classifier into the features, model and tail graphs."""

from .bundle import TAIL_NAME, WEIGHTS_NAME, Bundle
from .manifest import MANIFEST_NAME, Manifest
from .writer import Preprocessing, write_bundle

__all__ = ["MANIFEST_NAME", "TAIL_NAME", "WEIGHTS_NAME", "Bundle", "Manifest", "Preprocessing",
           "write_bundle"]
