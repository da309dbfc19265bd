"""How much a masked input's detections still find a target detection.

`drise_similarity` is D-RISE's (Petsiuk et al., CVPR 2021): the largest, over the masked
input's detections j, of IoU(box_t, box_j) · cos(P_t, P_j) · O_j, with P the class vectors
and O the objectness. `box_score` is pytorch-grad-cam's `FasterRCNNBoxScoreTarget` for one
box: the detection overlapping the box most, if its IoU is above 0.5 and its label is the
target's, scores its IoU plus its score; otherwise 0.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from .decoders import Detections

# The IoU above which `box_score` counts the best-overlapping detection (pytorch-grad-cam's).
BOX_IOU = 0.5


def iou_matrix(a: NDArray[np.floating], b: NDArray[np.floating]) -> NDArray[np.float64]:
    """T×K intersections over unions of boxes (x1, y1, x2, y2); 0 where a union is empty."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    top_left = np.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(bottom_right - top_left, 0.0, None).prod(axis=2)
    area_a = np.clip(a[:, 2:] - a[:, :2], 0.0, None).prod(axis=1)
    area_b = np.clip(b[:, 2:] - b[:, :2], 0.0, None).prod(axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def _cosines(a: NDArray[np.float64], b: NDArray[np.float64]) -> NDArray[np.float64]:
    norms = np.linalg.norm(a, axis=1)[:, None] * np.linalg.norm(b, axis=1)[None, :]
    dots = a @ b.T
    return np.divide(dots, norms, out=np.zeros_like(dots), where=norms > 0)


def drise_similarity(targets: Detections, found: Detections) -> NDArray[np.float64]:
    """T scores: D-RISE's similarity of each target with the best of `found` (0 if none)."""
    if len(found) == 0:
        return np.zeros(len(targets))
    s = (
        iou_matrix(targets.boxes, found.boxes)
        * _cosines(targets.vectors, found.vectors)
        * found.objectness[None, :]
    )
    return s.max(axis=1)


def box_score(targets: Detections, found: Detections) -> NDArray[np.float64]:
    """T scores: pytorch-grad-cam's box score of each target in `found` (0 if none)."""
    if len(found) == 0:
        return np.zeros(len(targets))
    ious = iou_matrix(targets.boxes, found.boxes)
    best = ious.argmax(axis=1)
    rows = np.arange(len(targets))
    matched = (ious[rows, best] > BOX_IOU) & (found.labels[best] == targets.labels)
    return np.where(matched, ious[rows, best] + found.scores[best], 0.0)
