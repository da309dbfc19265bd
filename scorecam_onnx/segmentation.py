"""Segmentation targets: a per-pixel model (N×C×H×W) explained for a class over a region.

Each masked input is scored as pytorch-grad-cam's `SemanticSegmentationTarget`: the sum of
class c's output over the region's pixels. The region is given (a boolean mask at the image's
or the output's size) or, by default, the pixels whose argmax is c. Without a class, the one
covering most pixels is explained (never the background class).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from .bundle.manifest import InputSpec, OutputSpec
from .forwards import to_probabilities
from .images import crop_box, place
from .targets import Class, Region, Target, TopK


class SegmentationTarget:
    """The classes to explain and the output pixels each is summed over.

    Args:
        clean: the model's output for the unmasked image (C×H×W).
        output: the manifest's output spec.
        classes: the class ids (already chosen).
        regions: per class, a boolean H×W mask at the output's size (None: the pixels
            whose argmax is the class).
    """

    def __init__(
        self,
        clean: NDArray[np.floating],
        output: OutputSpec,
        classes: list[int],
        regions: Sequence[NDArray[np.bool_] | None],
    ) -> None:
        self.classes = classes
        self.kind = output.score_kind
        winners = np.argmax(np.nan_to_num(clean, nan=-np.inf), axis=0)
        self.regions = [
            winners == c if r is None else r for c, r in zip(classes, regions, strict=True)
        ]
        empty = [c for c, r in zip(classes, self.regions, strict=True) if not r.any()]
        if empty:
            raise ValueError(f"class {empty[0]} covers no pixel of the output: give a region")
        self.columns = len(clean)

    def reduce(self, out: NDArray[np.floating]) -> NDArray[np.float64]:
        """N×C scores: each explained class's output summed over its region (0 elsewhere)."""
        scores = np.zeros((out.shape[0], self.columns), np.float64)
        for c, region in zip(self.classes, self.regions, strict=True):
            scores[:, c] = np.where(region[None], out[:, c], 0.0).sum(axis=(1, 2))
        return scores

    def probability(self, clean: NDArray[np.floating], index: int) -> float:
        """The mean per-pixel probability of the `index`-th class over its region."""
        c, region = self.classes[index], self.regions[index]
        pixels = clean[:, region].T  # (pixels in region) × C
        return float(to_probabilities(pixels, self.kind)[:, c].mean())


def segmentation_target(
    clean: NDArray[np.floating],
    output: OutputSpec,
    target: Target,
    region: NDArray[np.bool_] | None,
) -> SegmentationTarget:
    """The classes `target` chooses on a segmentation output (C×H×W), each scored over
    `region` (at the output's size; None: the class's argmax pixels). Given classes are
    checked; otherwise the classes covering most pixels, the background excluded (the
    target's, else the bundle's)."""
    chosen = target if isinstance(target, Region) else Region(None, target)
    if isinstance(chosen.of, Class):
        classes = chosen.of.classes(np.zeros(output.classes), output.classes)
    else:
        background = output.background if chosen.background is None else chosen.background
        top_k = chosen.of.k if isinstance(chosen.of, TopK) else None
        classes = choose_classes(clean, None, top_k, background) or []
    return SegmentationTarget(clean, output, classes, [region] * len(classes))


def choose_classes(
    clean: NDArray[np.floating],
    target: int | Sequence[int] | None,
    top_k: int | None,
    background: int | None,
) -> list[int] | None:
    """The classes covering most pixels (argmax), background excluded, for `top_k` or no
    target; None when `target` names them."""
    if target is not None:
        return None
    winners = np.argmax(np.nan_to_num(clean, nan=-np.inf), axis=0)
    counts = np.bincount(winners.ravel(), minlength=clean.shape[0]).astype(np.int64)
    if background is not None:
        counts[background] = -1
    order = [int(c) for c in np.argsort(-counts, kind="stable") if counts[c] > 0]
    if not order:
        raise ValueError("every pixel is the background class: give a class to explain")
    return order[: top_k or 1]


def output_region(
    mask: NDArray[Any], image_shape: tuple[int, ...], spec: InputSpec, output: OutputSpec
) -> NDArray[np.bool_]:
    """A region mask (non-zero pixels) at the image's size or the output's, at the output's:
    through the preprocessing's resize and crop, then to the output grid (nearest)."""
    mask = np.asarray(mask)
    if mask.ndim == 3:
        mask = np.asarray(mask.any(axis=2))
    if mask.ndim != 2:
        raise ValueError(f"a region is an H×W mask, got shape {mask.shape}")
    binary = (mask != 0).astype(np.uint8)
    size = (output.height, output.width)
    if binary.shape == size:
        return binary.astype(bool)
    if binary.shape != tuple(image_shape[:2]):
        raise ValueError(
            f"the region is {binary.shape[0]}×{binary.shape[1]}; give it at the "
            f"image's size {image_shape[0]}×{image_shape[1]} or the output's "
            f"{size[0]}×{size[1]}"
        )
    sh, sw, top, left = crop_box(binary.shape, spec)
    scaled = cv2.resize(binary, (sw, sh), interpolation=cv2.INTER_NEAREST)
    at_input = place(scaled, spec, top, left, 0)
    return cv2.resize(at_input, (size[1], size[0]), interpolation=cv2.INTER_NEAREST) > 0
