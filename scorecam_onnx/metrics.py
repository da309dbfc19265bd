"""Faithfulness metrics of the Score-CAM paper (section 4), on NumPy and any scoring function.

With Y_c = p_c(x) and O_c = p_c(x ⊙ L), L the saliency map multiplied into the normalised
input:

- Average Drop = mean over images of max(0, Y_c − O_c) / Y_c × 100 (lower is better).
- Increase in Confidence = share of images with O_c > Y_c, in % (higher is better).
- Deletion / Insertion (RISE, Petsiuk et al. 2018): pixels ranked by saliency are set to 0
  (deletion) or restored onto a Gaussian-blurred copy, kernel 11, σ 5 (insertion), a step at a
  time; the area under the p_c curve (trapezoid rule, x from 0 to 1) is lower (deletion) or
  higher (insertion) for a better map.
- Energy-based pointing game: the share of the map's energy inside the object's boxes.
- ROAD (Rong et al. 2022): `evaluation.road`, which needs SciPy.

Published numbers for context (VGG16, ImageNet val): Average Drop — Grad-CAM 47.8, Grad-CAM++
45.5, Score-CAM 31.5; Increase — 19.6, 18.9, 30.6; Insertion — 0.357, 0.346, 0.386;
Deletion — 0.089, 0.082, 0.077; pointing game — 48.1, 49.3, 63.7.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import cv2
import numpy as np
from numpy.typing import NDArray

# The metrics `evaluate` can report; ROAD solves sparse systems and is asked for by name.
METRICS = ("average-drop", "increase", "deletion", "insertion", "road")
DEFAULT_METRICS = METRICS[:4]


ProbabilityFn = Callable[[NDArray[np.float32]], NDArray[np.float64]]  # N×C×H×W → N×C

BLUR_KERNEL = 11
BLUR_SIGMA = 5.0


def average_drop(full: Sequence[float], explained: Sequence[float]) -> float:
    """Mean of max(0, Y − O) / Y over images, in % (Y: full image, O: image ⊙ map)."""
    y = np.asarray(full, dtype=np.float64)
    o = np.asarray(explained, dtype=np.float64)
    return float(np.mean(np.maximum(0.0, y - o) / np.maximum(y, 1e-12)) * 100.0)


def increase_in_confidence(full: Sequence[float], explained: Sequence[float]) -> float:
    """Share of images whose confidence rises when the map is applied (O > Y), in %."""
    y = np.asarray(full, dtype=np.float64)
    o = np.asarray(explained, dtype=np.float64)
    return float(np.mean(o > y) * 100.0)


def area_under_curve(curve: Sequence[float] | NDArray[np.floating]) -> float:
    """Trapezoid-rule area under points spaced evenly on [0, 1]."""
    values = np.asarray(curve, dtype=np.float64)
    if values.size < 2:
        raise ValueError("a curve needs at least two points")
    return float((values.sum() - values[0] / 2 - values[-1] / 2) / (values.size - 1))


def blurred(x: NDArray[np.float32]) -> NDArray[np.float32]:
    """The insertion canvas: each channel of 1×C×H×W blurred (Gaussian 11, σ 5, zero border)."""
    out = np.empty_like(x)
    for c in range(x.shape[1]):
        out[0, c] = cv2.GaussianBlur(
            x[0, c], (BLUR_KERNEL, BLUR_KERNEL), BLUR_SIGMA, borderType=cv2.BORDER_CONSTANT
        )
    return out


def causal_curve(
    probabilities: ProbabilityFn,
    x: NDArray[np.float32],
    saliency: NDArray[np.floating],
    class_id: int,
    mode: str,
    step_fraction: float = 0.01,
    batch_size: int = 16,
) -> NDArray[np.float64]:
    """p_c as the most salient pixels are deleted ("deletion") or inserted ("insertion").

    Args:
        probabilities: class probabilities for a batch of inputs.
        x: the preprocessed image, 1×C×H×W.
        saliency: H×W map at the input resolution.
        class_id: the class whose probability is tracked.
        mode: "deletion" (start from x, set pixels to 0) or "insertion" (start from the
            blurred x, restore pixels of x).
        step_fraction: share of the pixels changed per step. Default: 0.01 (1 %).
        batch_size: perturbed images scored per call.

    Returns:
        The curve: one probability per step, from the untouched start to the finished end.
    """
    if mode not in ("deletion", "insertion"):
        raise ValueError(f"mode must be 'deletion' or 'insertion', got {mode!r}")
    if not 0 < step_fraction <= 1:
        raise ValueError(f"step_fraction must be in (0, 1], got {step_fraction}")
    bands, h, w = x.shape[1:]
    if saliency.shape != (h, w):
        raise ValueError(f"saliency shape {saliency.shape} differs from the input's {(h, w)}")
    pixels = h * w
    step = max(1, round(pixels * step_fraction))
    steps = math.ceil(pixels / step)
    order = np.argsort(-np.nan_to_num(saliency).ravel(), kind="stable")
    if mode == "deletion":
        start, finish = x[0].reshape(bands, -1), np.zeros((bands, pixels), np.float32)
    else:
        start, finish = blurred(x)[0].reshape(bands, -1), x[0].reshape(bands, -1)
    canvas = start.copy()
    curve = np.empty(steps + 1, dtype=np.float64)
    batch = np.empty((min(batch_size, steps + 1), bands, h, w), dtype=np.float32)
    filled = 0
    for i in range(steps + 1):
        if i > 0:
            changed = order[(i - 1) * step : i * step]
            canvas[:, changed] = finish[:, changed]
        batch[filled] = canvas.reshape(bands, h, w)
        filled += 1
        if filled == batch.shape[0] or i == steps:
            curve[i - filled + 1 : i + 1] = probabilities(batch[:filled])[:, class_id]
            filled = 0
    return curve


def pointing_game(saliency: NDArray[np.floating], boxes: Sequence[Sequence[float]]) -> float:
    """Share of the map's energy inside the union of boxes (x0, y0, x1, y1), pixel units."""
    energy = np.nan_to_num(np.asarray(saliency, dtype=np.float64))
    inside = np.zeros(energy.shape, dtype=bool)
    h, w = energy.shape
    for box in boxes:
        if len(box) != 4:
            raise ValueError(f"a box is (x0, y0, x1, y1), got {box!r}")
        x0, y0, x1, y1 = (int(np.rint(v)) for v in box)
        inside[max(0, y0) : min(h, y1), max(0, x0) : min(w, x1)] = True
    total = energy.sum()
    return float(energy[inside].sum() / total) if total > 0 else 0.0


def softmax(scores: NDArray[np.floating]) -> NDArray[np.float64]:
    """Row-wise softmax of N×C scores; a row of only −∞ gives zeros."""
    s = np.asarray(scores, dtype=np.float64)
    top = s.max(axis=1, keepdims=True)
    e = np.exp(s - np.where(np.isfinite(top), top, 0.0))
    total = e.sum(axis=1, keepdims=True)
    return np.divide(e, total, out=np.zeros_like(e), where=total > 0)
