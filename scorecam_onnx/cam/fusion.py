"""Maps of several target layers fused into one, as the presets' peers do.

- "mean" (pytorch-grad-cam's `aggregate_multi_layers`): each layer's map at the input size
  (ReLU'd, min-max'd: what one layer gives), their mean, min-max again (ε 1e-7).
- "max" (torch-cam's `fuse_cams`): each layer's normalised map resized (bilinear, half-pixel)
  to the largest of the layers' grids, the element-wise maximum, then upsampled to the input
  as one layer's map is.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from .engine import GRADCAM, PAPER, TORCHCAM
from .interp import Resizer

FUSIONS = ("mean", "max")
# The fusion a preset uses when none is given: its peer's; the paper has none, and the mean
# keeps every layer's evidence (max lets the most confident layer hide the others).
DEFAULT_FUSION = {PAPER: "mean", GRADCAM: "mean", TORCHCAM: "max"}


def largest_grid(grids: list[tuple[int, int]]) -> tuple[int, int]:
    """The largest height and the largest width among the layers' grids (torch-cam's)."""
    return max(g[0] for g in grids), max(g[1] for g in grids)


def fuse(
    maps: list[tuple[NDArray[np.float32], bool]],
    mode: str,
    grid: tuple[int, int] | None,
    size: tuple[int, int],
) -> tuple[NDArray[np.float32], bool]:
    """One map from the layers' (map, degenerate) pairs: a single layer's as it is, else
    fused by `mode`; with `grid`, the maps are at that grid and "max" upsamples to `size`."""
    if len(maps) == 1:
        return maps[0]
    found = [m for m, _ in maps]
    return fuse_max(found, grid, size) if mode == "max" else fuse_mean(found)


def fuse_mean(maps: list[NDArray[np.float32]]) -> tuple[NDArray[np.float32], bool]:
    """The mean of the layers' input-size maps, ReLU'd and min-max'd (ε 1e-7)."""
    mean = np.maximum(np.stack(maps).astype(np.float64), 0.0).mean(axis=0)
    shifted = mean - mean.min()
    if not shifted.max() > 0:
        return np.zeros(mean.shape, np.float32), True
    return (shifted / (1e-7 + shifted.max())).astype(np.float32), False


def fuse_max(
    maps: list[NDArray[np.float32]],
    grid: tuple[int, int] | None = None,
    size: tuple[int, int] | None = None,
) -> tuple[NDArray[np.float32], bool]:
    """The element-wise maximum of the layers' maps; with `grid` and `size`, the maps are at
    `grid` and the maximum is upsampled to `size` (bilinear, half-pixel centres)."""
    fused = np.stack(maps).astype(np.float64).max(axis=0)
    if grid is not None and size is not None and grid != size:
        fused = Resizer(grid, size, align_corners=False)(fused)
    fused = np.clip(fused, 0.0, 1.0).astype(np.float32)
    return fused, bool(fused.max() <= 0.0 or fused.max() == fused.min())
