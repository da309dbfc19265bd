"""Detection targets: which detections of an object detector are explained, and how a
masked input is scored for each.

The target chooses among the unmasked image's detections (`Top1`: all of them, at most
`max_detections`; `TopK(k)`: the k best; `Class(ids)`: those of the classes) or gives boxes
(`Box`, `Boxes`). Every masked input is decoded as the unmasked one was (same score
threshold and suppression) and scored for each target by D-RISE's similarity, or with the
pytorch-grad-cam preset by its `FasterRCNNBoxScoreTarget` score: all targets from the same
forwards.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from .cam.engine import GRADCAM
from .detection import Detections, box_score, drise_similarity, iou_matrix
from .forwards import Forwards
from .targets import Box, Boxes, Class, Target, TopK


@dataclass(frozen=True)
class DetectionTarget:
    """The detections explained (input pixels, best first or as given) and their scorer."""

    targets: Detections
    threshold: float
    similarity: Callable[[Detections, Detections], NDArray[np.float64]]

    def scores(self, found: list[Detections]) -> NDArray[np.float32]:
        """N×T scores of each image's detections for each target (NaN for an image whose
        outputs were not finite: the engine counts it as undefined and says so)."""
        return np.stack(
            [
                self.similarity(self.targets, d) if d.finite else np.full(len(self.targets), np.nan)
                for d in found
            ]
        ).astype(np.float32)

    def scorer(self, forwards: Forwards) -> Callable[[NDArray[np.float32]], NDArray[np.float32]]:
        """Masked inputs → N×T scores, through the detector and its decoder."""
        return lambda batch: self.scores(forwards.detections(batch, self.threshold))


def similarity_of(preset: str) -> Callable[[Detections, Detections], NDArray[np.float64]]:
    """pytorch-grad-cam's box score for its preset; D-RISE's similarity otherwise."""
    return box_score if preset == GRADCAM else drise_similarity


def detection_target(
    found: Detections,
    target: Target,
    boxes: NDArray[np.float64] | None,
    max_detections: int,
    classes: int,
) -> Detections:
    """The detections `target` explains among `found` (the unmasked image's), or the given
    `boxes` (K×4, input pixels, in the order of the target's boxes)."""
    if isinstance(target, Box | Boxes):
        items = target.items if isinstance(target, Boxes) else (target,)
        return _given(found, boxes, [b.class_id for b in items], classes)
    if len(found) == 0:
        raise ValueError(
            "no detection above the score threshold: lower --score-threshold or give a box"
        )
    if isinstance(target, TopK):
        return found.take(range(min(target.k, len(found))))
    if isinstance(target, Class):
        for class_id in target.ids:
            if not 0 <= class_id < classes:
                raise ValueError(f"class id {class_id} is out of range (0 to {classes - 1})")
        index = np.flatnonzero(np.isin(found.labels, target.ids))[:max_detections]
        if index.size == 0:
            raise ValueError(
                f"no detection of class {', '.join(map(str, target.ids))} above the score threshold"
            )
        return found.take(index)
    return found.take(range(min(max_detections, len(found))))


def _given(
    found: Detections, boxes: NDArray[np.float64] | None, labels: list[int | None], classes: int
) -> Detections:
    """Given boxes as targets, as D-RISE takes them: a given class as a one-hot vector, else
    the class vector of the detection overlapping the box most. The score reported is that
    of the detection of the class overlapping the box most (0 if none)."""
    assert boxes is not None
    ious = iou_matrix(boxes, found.boxes) if len(found) else np.zeros((len(boxes), 0))
    vectors, scores, chosen = [], [], []
    for i, given in enumerate(labels):
        overlap = ious[i] if given is None else ious[i] * (found.labels == given)
        best = int(overlap.argmax()) if overlap.size and overlap.max() > 0 else None
        if best is None and given is None:
            raise ValueError("no detection overlaps the box: give its class (x1,y1,x2,y2,class)")
        if given is None:
            vectors.append(found.vectors[best])
        else:
            vectors.append(np.eye(classes)[given])
        chosen.append(int(found.labels[best]) if given is None else given)
        scores.append(float(found.scores[best]) if best is not None else 0.0)
    return Detections(
        np.asarray(boxes, np.float64),
        np.asarray(scores),
        np.asarray(chosen, np.int64),
        np.asarray(vectors),
        np.ones(len(labels)),
    )
