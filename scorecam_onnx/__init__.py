"""scorecam-onnx: gradient-free Score-CAM explanations served by ONNX Runtime.

>>> from scorecam_onnx import Explainer, overlay
>>> ex = Explainer()                      # the shipped EfficientNet-Lite0 bundle
>>> res = ex.explain("samples/chelsea.png")
>>> res.label, round(res.score, 2)
('Egyptian cat', 0.79)
"""

import os
from importlib.metadata import version as package_version

# OpenCV reads its decoders' pixel guard once, when it loads, so it is set before anything
# here imports cv2: it bounds the formats whose size cannot be read before decoding. The
# value is images.DEFAULT_MAX_PIXELS (a test keeps them equal).
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", "100000000")


from .bundle import Bundle, Preprocessing, write_bundle
from .cam.engine import PRESETS, Preset, ScoreCam
from .cam.methods import METHODS, EigenCam, FasterScoreCam, ISCam, SSCam, make_method
from .errors import BundleError, ImageError, ProviderError, ScoreCamError
from .explainer import Explainer, Explanation, default_bundle
from .images import load_image
from .render import contact_sheet, heatmap, overlay

__version__ = package_version("scorecam-onnx")

__all__ = [
    "METHODS",
    "PRESETS",
    "Bundle",
    "BundleError",
    "EigenCam",
    "Explainer",
    "Explanation",
    "FasterScoreCam",
    "ISCam",
    "ImageError",
    "Preprocessing",
    "Preset",
    "ProviderError",
    "SSCam",
    "ScoreCam",
    "ScoreCamError",
    "contact_sheet",
    "default_bundle",
    "heatmap",
    "load_image",
    "make_method",
    "overlay",
    "write_bundle",
]
