"""Line charts drawn with OpenCV (no plotting library): one panel of curves, one colour per
series, with its legend; panels side by side."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
from numpy.typing import NDArray

COLOURS = [
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (127, 127, 127),
    (23, 190, 207),
    (188, 189, 34),
]
_FONT = cv2.FONT_HERSHEY_SIMPLEX


@dataclass(frozen=True)
class Series:
    """A named curve: its points' x and y values."""

    name: str
    xs: Sequence[float] | NDArray[np.floating]
    ys: Sequence[float] | NDArray[np.floating]


def colour(index: int) -> tuple[int, int, int]:
    """The RGB colour of the `index`-th series (the same in every chart and report)."""
    return COLOURS[index % len(COLOURS)]


def panel(
    title: str,
    series: Sequence[Series],
    x_range: tuple[float, float] = (0.0, 1.0),
    y_range: tuple[float, float] = (0.0, 1.0),
    width: int = 480,
    height: int = 320,
) -> NDArray[np.uint8]:
    """One chart (RGB uint8): axes box, title, y ticks at both ends and the middle, each
    series as a polyline in its colour (NaN points skipped), and the legend below."""
    image = np.full((height, width, 3), 255, np.uint8)
    left, right, top, bottom = 50, width - 15, 30, height - 80
    cv2.rectangle(image, (left, top), (right, bottom), (0, 0, 0), 1)
    cv2.putText(image, title, (left, 20), _FONT, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    low, high = y_range
    for tick in (low, (low + high) / 2, high):
        y = int(bottom - (tick - low) / (high - low) * (bottom - top))
        cv2.putText(image, f"{tick:.1f}", (8, y + 4), _FONT, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    x0, x1 = x_range
    for i, s in enumerate(series):
        xs, ys = np.asarray(s.xs, np.float64), np.asarray(s.ys, np.float64)
        keep = np.isfinite(ys)
        px = left + (xs[keep] - x0) / ((x1 - x0) or 1.0) * (right - left)
        py = bottom - (np.clip(ys[keep], low, high) - low) / (high - low) * (bottom - top)
        points = np.stack([px, py], axis=1).round().astype(np.int32)
        if len(points):
            cv2.polylines(image, [points], False, colour(i), 2, cv2.LINE_AA)
        lx, ly = left + (i % 3) * 140, bottom + 30 + (i // 3) * 22
        cv2.line(image, (lx, ly - 4), (lx + 20, ly - 4), colour(i), 3)
        cv2.putText(image, s.name, (lx + 25, ly), _FONT, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    return image


def side_by_side(panels: Sequence[NDArray[np.uint8]]) -> NDArray[np.uint8]:
    """Panels of the same height in a row."""
    return np.concatenate(list(panels), axis=1)
