"""scorecam-onnx: gradient-free Score-CAM explanations served by ONNX Runtime.

>>> from scorecam_onnx import Explainer, overlay
>>> ex = Explainer()                      # the shipped EfficientNet-Lite0 bundle
>>> [res] = ex.explain("samples/chelsea.png")
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
from .errors import BundleError, ImageError, ProviderError, ScoreCamError
from .explainer import Detection, Explainer, Explanation, default_bundle
from .images import load_image
from .methods import (
    METHODS,
    PRESETS,
    AblationCam,
    ClusterScoreCam,
    DRise,
    EigenCam,
    FasterScoreCam,
    ISCam,
    Method,
    ReciproCam,
    Rise,
    ScoreCam,
    SSCam,
    method_from,
)
from .options import ExplainOptions
from .render import contact_sheet, heatmap, overlay
from .request import ExplainRequest
from .runtime import Runtime
from .targets import Box, Boxes, Class, Region, Target, Top1, TopK

__version__ = package_version("scorecam-onnx")

__all__ = [
    "METHODS",
    "PRESETS",
    "AblationCam",
    "Box",
    "Boxes",
    "Bundle",
    "BundleError",
    "Class",
    "ClusterScoreCam",
    "DRise",
    "Detection",
    "EigenCam",
    "ExplainOptions",
    "ExplainRequest",
    "Explainer",
    "Explanation",
    "FasterScoreCam",
    "ISCam",
    "ImageError",
    "Method",
    "Preprocessing",
    "ProviderError",
    "ReciproCam",
    "Region",
    "Rise",
    "Runtime",
    "SSCam",
    "ScoreCam",
    "ScoreCamError",
    "Target",
    "Top1",
    "TopK",
    "contact_sheet",
    "default_bundle",
    "heatmap",
    "load_image",
    "method_from",
    "overlay",
    "write_bundle",
]
