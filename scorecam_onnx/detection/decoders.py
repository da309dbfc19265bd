"""A detector's outputs as detections: boxes (x1, y1, x2, y2, in input pixels), scores,
labels, and the class vector and objectness that D-RISE compares.

Each layout is decoded as its exporter's own post-processing does: YOLOv8/YOLO11 heads
(N×(4+C)×A, the best class per anchor) and YOLOv5 heads (N×A×(5+C), score = objectness ×
class) by score threshold and class-aware non-maximum suppression (OpenCV's); end-to-end and
torchvision outputs (already suppressed) by score threshold; DETR's queries by softmax, the
last class being "no object".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
from numpy.typing import NDArray

from ..bundle.manifest import DecoderSpec

# Detections kept per image after suppression (ultralytics' default).
MAX_KEPT = 300


@dataclass(frozen=True)
class Detections:
    """K detections of one image, best first.

    Attributes:
        boxes: K×4 (x1, y1, x2, y2) in input pixels.
        scores: K scores (the probability of the label).
        labels: K class ids.
        vectors: K×C class probability vectors.
        objectness: K objectness values (1 where the detector has none).
        finite: False when the detector's outputs for the image were not all finite (no
            detection is then known).
    """

    boxes: NDArray[np.float64]
    scores: NDArray[np.float64]
    labels: NDArray[np.int64]
    vectors: NDArray[np.float64]
    objectness: NDArray[np.float64]
    finite: bool = True

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    def take(self, index: Sequence[int] | NDArray[np.int64]) -> Detections:
        """The detections at `index`, in its order."""
        i = np.asarray(index, np.int64)
        return Detections(
            self.boxes[i],
            self.scores[i],
            self.labels[i],
            self.vectors[i],
            self.objectness[i],
            self.finite,
        )

    def nonfinite(self) -> Detections:
        """No detection, marked as coming from outputs that were not finite."""
        return Detections(
            self.boxes[:0],
            self.scores[:0],
            self.labels[:0],
            self.vectors[:0],
            self.objectness[:0],
            False,
        )


def expanded_vectors(scores: NDArray, labels: NDArray, classes: int) -> NDArray[np.float64]:
    """Class vectors rebuilt from a top-1 score: the score at the label, the rest shared
    evenly by the other classes (for detectors that report only the best class)."""
    k = scores.shape[0]
    rest = (1.0 - scores) / max(classes - 1, 1)
    vectors = np.repeat(rest[:, None], classes, axis=1)
    vectors[np.arange(k), labels] = scores
    return vectors


def _xyxy(centre: NDArray) -> NDArray[np.float64]:
    cx, cy, w, h = (centre[:, i].astype(np.float64) for i in range(4))
    return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)


def _suppressed(
    boxes: NDArray, scores: NDArray, labels: NDArray, threshold: float, iou: float
) -> NDArray[np.int64]:
    """Indices kept by class-aware non-maximum suppression, best first."""
    if scores.shape[0] == 0:
        return np.zeros(0, np.int64)
    xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)
    kept = cv2.dnn.NMSBoxesBatched(xywh.tolist(), scores.tolist(), labels.tolist(), threshold, iou)
    return best_first(scores, np.asarray(kept, np.int64).reshape(-1))


def best_first(scores: NDArray, index: NDArray[np.int64]) -> NDArray[np.int64]:
    """`index` ordered by falling score (ties in their order), at most `MAX_KEPT`."""
    return index[np.argsort(-scores[index], kind="stable")][:MAX_KEPT]


def _heads(
    boxes: NDArray,
    scores: NDArray,
    labels: NDArray,
    vectors: NDArray,
    objectness: NDArray,
    threshold: float,
    iou: float,
) -> Detections:
    keep = scores > threshold
    found = Detections(
        boxes[keep],
        scores[keep].astype(np.float64),
        labels[keep],
        vectors[keep].astype(np.float64),
        objectness[keep].astype(np.float64),
    )
    return found.take(_suppressed(found.boxes, found.scores, found.labels, threshold, iou))


def _yolov8(
    outputs: list[NDArray], n: int, spec: DecoderSpec, threshold: float, size: tuple[int, int]
) -> Detections:
    rows = outputs[0][n].T  # A × (4 + C)
    classes = rows[:, 4:]
    labels = classes.argmax(axis=1)
    scores = classes[np.arange(rows.shape[0]), labels]
    return _heads(
        _xyxy(rows[:, :4]), scores, labels, classes, np.ones(rows.shape[0]), threshold, spec.iou
    )


def _yolov5(
    outputs: list[NDArray], n: int, spec: DecoderSpec, threshold: float, size: tuple[int, int]
) -> Detections:
    rows = outputs[0][n]  # A × (5 + C)
    objectness, classes = rows[:, 4], rows[:, 5:]
    joint = classes * objectness[:, None]
    labels = joint.argmax(axis=1)
    scores = joint[np.arange(rows.shape[0]), labels]
    return _heads(_xyxy(rows[:, :4]), scores, labels, classes, objectness, threshold, spec.iou)


def _end2end(
    outputs: list[NDArray],
    n: int,
    spec: DecoderSpec,
    threshold: float,
    size: tuple[int, int],
    classes: int,
) -> Detections:
    rows = outputs[0][n]  # K × 6
    return _reported(rows[:, :4], rows[:, 4], rows[:, 5], threshold, classes)


def _torchvision(
    outputs: list[NDArray],
    n: int,
    spec: DecoderSpec,
    threshold: float,
    size: tuple[int, int],
    classes: int,
) -> Detections:
    boxes, labels, scores = outputs[0], outputs[1], outputs[2]
    if boxes.ndim == 3:  # exported with a batch axis
        boxes, labels, scores = boxes[n], labels[n], scores[n]
    return _reported(boxes, scores, labels, threshold, classes)


def _reported(
    boxes: NDArray, scores: NDArray, labels: NDArray, threshold: float, classes: int
) -> Detections:
    """Detections a graph reports already suppressed: kept above the threshold, best first."""
    scores = np.asarray(scores, np.float64)
    labels = np.rint(np.asarray(labels, np.float64)).astype(np.int64)
    keep = best_first(
        scores, np.flatnonzero((scores > threshold) & (labels >= 0) & (labels < classes))
    )
    return Detections(
        np.asarray(boxes, np.float64).reshape(-1, 4)[keep],
        scores[keep],
        labels[keep],
        expanded_vectors(scores[keep], labels[keep], classes),
        np.ones(keep.shape[0]),
    )


def _detr(
    outputs: list[NDArray], n: int, spec: DecoderSpec, threshold: float, size: tuple[int, int]
) -> Detections:
    logits = outputs[0][n].astype(np.float64)  # Q × (C + 1)
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs = (exp / exp.sum(axis=1, keepdims=True))[:, :-1]
    labels = probs.argmax(axis=1)
    scores = probs[np.arange(probs.shape[0]), labels]
    h, w = size
    boxes = _xyxy(outputs[1][n]) * [w, h, w, h]
    keep = best_first(scores, np.flatnonzero(scores > threshold))
    return Detections(boxes[keep], scores[keep], labels[keep], probs[keep], np.ones(keep.shape[0]))


def decode(
    spec: DecoderSpec, outputs: list[NDArray], classes: int, threshold: float, size: tuple[int, int]
) -> list[Detections]:
    """Each image's detections above `threshold` from a batch's outputs (in the order of
    `spec.outputs`); `size` is the input's (height, width)."""
    images = 1 if spec.kind == "torchvision" and outputs[0].ndim == 2 else outputs[0].shape[0]
    if spec.kind in ("end2end", "torchvision"):
        reported = _end2end if spec.kind == "end2end" else _torchvision
        return [reported(outputs, n, spec, threshold, size, classes) for n in range(images)]
    raw = {"yolov8": _yolov8, "yolov5": _yolov5, "detr": _detr}[spec.kind]
    return [raw(outputs, n, spec, threshold, size) for n in range(images)]
