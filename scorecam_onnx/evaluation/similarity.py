"""How alike two saliency maps are, as the sanity checks of Adebayo et al. (2018) measure it:
Spearman's rank correlation (of the maps, and of their absolute values), the structural
similarity index (SSIM) and the correlation of their histograms of oriented gradients (HOG).

Plain NumPy and OpenCV: ranks average their ties (as `scipy.stats.spearmanr`), SSIM uses a 7×7
uniform window with the sample covariance on maps spanning [0, 1] (as
`skimage.metrics.structural_similarity`), HOG 9 orientations, 16×16-pixel cells (as the
paper's code), 3×3-cell blocks and L2-Hys normalisation (as `skimage.feature.hog`), compared
by Pearson's correlation (as the paper states). A correlation with a constant map is not a
number.
"""

from __future__ import annotations

import cv2
import numpy as np
from numpy.typing import NDArray

SSIM_WINDOW = 7
SSIM_K1, SSIM_K2 = 0.01, 0.03
HOG_ORIENTATIONS = 9
HOG_CELL = 16  # the authors' code (skimage's default is 8)
HOG_BLOCK = 3


def pearson(a: NDArray[np.floating], b: NDArray[np.floating]) -> float:
    """Pearson's correlation of two arrays of the same size (NaN when one is constant)."""
    x = np.asarray(a, np.float64).ravel()
    y = np.asarray(b, np.float64).ravel()
    if x.size == 0:  # e.g. the HOG of a map smaller than one block
        return float("nan")
    x, y = x - x.mean(), y - y.mean()
    scale = np.sqrt((x * x).sum() * (y * y).sum())
    return float((x * y).sum() / scale) if scale > 0 else float("nan")


def ranks(values: NDArray[np.floating]) -> NDArray[np.float64]:
    """1-based ranks of the flattened values, ties sharing their average rank."""
    flat = np.asarray(values, np.float64).ravel()
    order = np.argsort(flat, kind="mergesort")
    ordered = flat[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    ends = np.r_[starts[1:], flat.size]
    found = np.empty(flat.size, np.float64)
    found[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)
    return found


def spearman(a: NDArray[np.floating], b: NDArray[np.floating]) -> float:
    """Spearman's rank correlation of two maps."""
    return pearson(ranks(a), ranks(b))


def ssim(a: NDArray[np.floating], b: NDArray[np.floating], data_range: float = 1.0) -> float:
    """Mean structural similarity of two H×W maps (values spanning `data_range`), over the
    pixels whose 7×7 window lies inside the maps."""
    x, y = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if x.shape != y.shape or x.ndim != 2 or min(x.shape) < SSIM_WINDOW:
        raise ValueError(f"SSIM needs two H×W maps of at least 7×7, got {x.shape}, {y.shape}")
    size = (SSIM_WINDOW, SSIM_WINDOW)

    def mean(v: NDArray[np.float64]) -> NDArray[np.float64]:
        return np.asarray(cv2.blur(v, size, borderType=cv2.BORDER_REFLECT), np.float64)

    n = SSIM_WINDOW * SSIM_WINDOW
    unbiased = n / (n - 1)
    mx, my = mean(x), mean(y)
    vx = unbiased * (mean(x * x) - mx * mx)
    vy = unbiased * (mean(y * y) - my * my)
    vxy = unbiased * (mean(x * y) - mx * my)
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    index = ((2 * mx * my + c1) * (2 * vxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    pad = (SSIM_WINDOW - 1) // 2
    return float(index[pad:-pad, pad:-pad].mean())


def hog(image: NDArray[np.floating]) -> NDArray[np.float64]:
    """The HOG feature vector of an H×W map (central-difference gradients, unsigned
    orientations in 9 bins, magnitudes summed per 16×16 cell, L2-Hys over 3×3-cell blocks)."""
    x = np.asarray(image, np.float64)
    cells_r, cells_c = x.shape[0] // HOG_CELL, x.shape[1] // HOG_CELL
    if min(cells_r, cells_c) < HOG_BLOCK:  # smaller than one block: no feature
        return np.zeros(0)
    rows, cols = np.zeros_like(x), np.zeros_like(x)
    rows[1:-1] = x[2:] - x[:-2]
    cols[:, 1:-1] = x[:, 2:] - x[:, :-2]
    magnitude = np.hypot(cols, rows)
    orientation = np.rad2deg(np.arctan2(rows, cols)) % 180
    bounds = (180.0 / HOG_ORIENTATIONS) * np.arange(1, HOG_ORIENTATIONS + 1)
    bins = np.searchsorted(bounds, orientation, side="right")
    h, w = cells_r * HOG_CELL, cells_c * HOG_CELL
    votes = np.zeros((h, w, HOG_ORIENTATIONS))
    r, c = np.indices((h, w))
    votes[r, c, np.minimum(bins[:h, :w], HOG_ORIENTATIONS - 1)] = magnitude[:h, :w]
    votes[bins[:h, :w] >= HOG_ORIENTATIONS] = 0.0
    cells = votes.reshape(cells_r, HOG_CELL, cells_c, HOG_CELL, -1).sum(axis=(1, 3))
    cells /= HOG_CELL * HOG_CELL
    blocks = [
        _l2_hys(cells[i : i + HOG_BLOCK, j : j + HOG_BLOCK])
        for i in range(cells_r - HOG_BLOCK + 1)
        for j in range(cells_c - HOG_BLOCK + 1)
    ]
    return np.concatenate([b.ravel() for b in blocks])


def _l2_hys(block: NDArray[np.float64], eps: float = 1e-5) -> NDArray[np.float64]:
    out = block / np.sqrt((block**2).sum() + eps**2)
    out = np.minimum(out, 0.2)
    normed: NDArray[np.float64] = out / np.sqrt((out**2).sum() + eps**2)
    return normed


def hog_similarity(a: NDArray[np.floating], b: NDArray[np.floating]) -> float:
    """Pearson's correlation of the two maps' HOG feature vectors."""
    return pearson(hog(a), hog(b))


def defined_mean(values: list[float]) -> float:
    """The mean of the values that are numbers (NaN when none is)."""
    finite = [v for v in values if not np.isnan(v)]
    return float(np.mean(finite)) if finite else float("nan")


def similarities(original: NDArray[np.floating], other: NDArray[np.floating]) -> dict[str, float]:
    """Every similarity of the sanity checks between two maps of the same size."""
    return {
        "spearman": spearman(original, other),
        "spearman_abs": spearman(np.abs(original), np.abs(other)),
        "ssim": ssim(original, other),
        "hog": hog_similarity(original, other),
    }
