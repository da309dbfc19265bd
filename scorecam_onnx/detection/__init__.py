"""Object detectors on arrays: their outputs decoded into detections, and the scores of a
masked input's detections for a target detection."""

from .decoders import Detections, decode, expanded_vectors
from .similarity import box_score, drise_similarity, iou_matrix

__all__ = [
    "Detections",
    "box_score",
    "decode",
    "drise_similarity",
    "expanded_vectors",
    "iou_matrix",
]
