"""ROAD, RemOve And Debias (Rong et al., ICML 2022), as pytorch-grad-cam's `metrics/road.py`.

At each percentile p, the pixels whose map value is at or above the map's p-th percentile
(most relevant first, MoRF) or at or below its (100 − p)-th (least relevant first, LeRF) are
removed and filled by noisy linear imputation: every removed pixel is the weighted mean of its
eight neighbours (1/6 across an edge, 1/12 across a corner; weights of neighbours outside the
image dropped), removed neighbours being unknowns too, all solved as one sparse linear system
per image, then Gaussian noise of the given scale is added. The score is the change of the
class's softmax probability; each curve is averaged over the percentiles, and the combined
score is (LeRF − MoRF) / 2 (higher is better). Needs SciPy (extra ``metrics``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from ..errors import ScoreCamError

PERCENTILES = (10, 20, 30, 40, 50, 60, 70, 80, 90)
NOISE = 0.01
# (row offset, column offset) → weight of that neighbour in a removed pixel's mean.
NEIGHBOURS = (
    ((1, 1), 1 / 12),
    ((0, 1), 1 / 6),
    ((-1, 1), 1 / 12),
    ((1, -1), 1 / 12),
    ((0, -1), 1 / 6),
    ((-1, -1), 1 / 12),
    ((1, 0), 1 / 6),
    ((-1, 0), 1 / 6),
)

Probabilities = Callable[[NDArray[np.float32]], NDArray[np.floating]]


@dataclass(frozen=True)
class Road:
    """One map's ROAD scores: mean probability change with the most (MoRF) and least
    (LeRF) relevant pixels removed, and (LeRF − MoRF) / 2."""

    morf: float
    lerf: float
    combined: float


def import_scipy():
    """scipy.sparse and its solver, or a one-line error naming the extra."""
    try:
        from scipy import sparse
        from scipy.sparse import linalg
    except ImportError:
        raise ScoreCamError("ROAD needs SciPy: pip install 'scorecam-onnx[metrics]'") from None
    return sparse, linalg


def impute(
    x: NDArray[np.float32],
    keep: NDArray[np.bool_],
    noise: float = NOISE,
    rng: np.random.Generator | None = None,
) -> NDArray[np.float32]:
    """`x` (C×H×W) with the pixels where `keep` is False filled by noisy linear imputation."""
    sparse, linalg = import_scipy()
    channels, h, w = x.shape
    removed = np.flatnonzero(~keep.ravel())
    if removed.size == 0:
        return x.copy()
    index = np.full(h * w, -1, np.int64)
    index[removed] = np.arange(removed.size)
    rows, cols = removed // w, removed % w
    values = x.reshape(channels, -1).astype(np.float64)
    diagonal = np.ones(removed.size)
    right = np.zeros((removed.size, channels))
    a_rows, a_cols, a_values = [], [], []
    for (dy, dx), weight in NEIGHBOURS:
        ny, nx = rows + dy, cols + dx
        inside = (ny >= 0) & (ny < h) & (nx >= 0) & (nx < w)
        diagonal[~inside] -= weight
        equation = np.flatnonzero(inside)
        neighbour = ny[inside] * w + nx[inside]
        unknown = index[neighbour] >= 0
        a_rows.append(equation[unknown])
        a_cols.append(index[neighbour[unknown]])
        a_values.append(np.full(int(unknown.sum()), weight))
        right[equation[~unknown]] -= weight * values[:, neighbour[~unknown]].T
    n = removed.size
    a_rows.append(np.arange(n))
    a_cols.append(np.arange(n))
    a_values.append(-diagonal)
    system = sparse.csc_matrix(
        (np.concatenate(a_values), (np.concatenate(a_rows), np.concatenate(a_cols))), (n, n)
    )
    solved = np.asarray(linalg.spsolve(system, right)).reshape(n, channels)
    filled = values.copy()
    filled[:, removed] = solved.T
    if noise:
        generator = rng if rng is not None else np.random.default_rng(0)
        filled[:, removed] += noise * generator.standard_normal((channels, n))
    return filled.reshape(x.shape).astype(np.float32)


def road(
    probabilities: Probabilities,
    x: NDArray[np.float32],
    cam: NDArray[np.floating],
    class_id: int,
    percentiles: Sequence[float] = PERCENTILES,
    noise: float = NOISE,
    seed: int = 0,
    batch_size: int = 8,
) -> Road:
    """ROAD for one map (H×W at the model's input size) of class `class_id` on the
    preprocessed input `x` (1×C×H×W); `probabilities` maps a batch to N×C probabilities.
    The noise is drawn from `seed`, so the scores are reproducible."""
    cam = np.asarray(cam, dtype=np.float32)
    rng = np.random.default_rng(seed)
    images = []
    for order in ("morf", "lerf"):
        ranked = cam if order == "morf" else 1 - cam
        for p in percentiles:
            keep = ranked < np.percentile(ranked, p)
            images.append(impute(x[0], keep, noise, rng))
    before = float(probabilities(x)[0, class_id])
    after = []
    for start in range(0, len(images), batch_size):
        batch = np.stack(images[start : start + batch_size])
        after.extend(np.asarray(probabilities(batch))[:, class_id].tolist())
    half = len(percentiles)
    changes = np.asarray(after, np.float32) - np.float32(before)
    morf, lerf = float(np.mean(changes[:half])), float(np.mean(changes[half:]))
    return Road(morf, lerf, (lerf - morf) / 2)
