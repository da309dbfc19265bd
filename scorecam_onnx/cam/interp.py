"""Bilinear resizing written as fixed interpolation matrices.

Upsampling a stack of maps A (B×h×w) to H×W is ``Ry @ A @ Rxᵀ``: two matrix products, exact
for both conventions PyTorch offers (``align_corners`` False or True). With
``align_corners=False`` the matrices also equal OpenCV's ``INTER_LINEAR`` (half-pixel centres,
edges clamped).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray


def bilinear_matrix(n_out: int, n_in: int, align_corners: bool) -> NDArray[np.float32]:
    """The n_out × n_in matrix of 1-D linear interpolation from n_in samples to n_out."""
    if n_out < 1 or n_in < 1:
        raise ValueError(f"sizes must be positive, got {n_out} and {n_in}")
    out = np.arange(n_out, dtype=np.float64)
    if align_corners:
        src = out * ((n_in - 1) / (n_out - 1)) if n_out > 1 else np.zeros(n_out)
    else:
        src = np.maximum((out + 0.5) * (n_in / n_out) - 0.5, 0.0)
    low = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    high = np.minimum(low + 1, n_in - 1)
    frac = src - low
    matrix = np.zeros((n_out, n_in), dtype=np.float64)
    rows = np.arange(n_out)
    np.add.at(matrix, (rows, low), 1.0 - frac)
    np.add.at(matrix, (rows, high), frac)
    return matrix.astype(np.float32)


class Resizer:
    """Resizes stacks of h×w maps to H×W with one fixed bilinear convention."""

    def __init__(self, src: tuple[int, int], dst: tuple[int, int], align_corners: bool) -> None:
        self.rows = bilinear_matrix(dst[0], src[0], align_corners)
        self.cols_t = np.ascontiguousarray(bilinear_matrix(dst[1], src[1], align_corners).T)
        self.dst = dst

    def __call__(self, maps: NDArray[np.floating], out: NDArray | None = None) -> NDArray:
        """Resize B×h×w (or h×w) maps; the result has the input's float dtype."""
        single = maps.ndim == 2
        stack = maps[None] if single else maps
        dtype = np.float64 if stack.dtype == np.float64 else np.float32
        b, h, w = stack.shape
        wide = stack.reshape(b * h, w).astype(dtype, copy=False) @ self.cols_t.astype(dtype)
        result = np.matmul(self.rows.astype(dtype), wide.reshape(b, h, self.dst[1]), out=out)
        return result[0] if single else result
