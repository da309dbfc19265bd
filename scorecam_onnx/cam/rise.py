"""RISE (Petsiuk et al., BMVC 2018): saliency from randomly masked inputs, no layer needed.

Mask i: an s×s grid of cells kept with probability p, upsampled bilinearly to (s+1)·cell
pixels (cell = ⌈H/s⌉, ⌈W/s⌉) and cropped at a random shift below one cell, as the paper's
reference code builds them. The map is Σᵢ score_c(x ⊙ Mᵢ)·Mᵢ / (N·p), with score_c the
softmax probability of class c. Masks are drawn per mask index from the seed, so a batch
builds only its own and the map does not depend on the batch size.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import cv2
import numpy as np
from numpy.typing import NDArray

from .engine import PAPER, Attribution, Scores, class_scores, min_max_normalised, run_batches

if TYPE_CHECKING:
    from .engine import Preset, Progress, ScoreFn

# Masks when none are given: on the shipped bundle the map of N masks correlated with the map
# of 2N by 0.86, 0.82, 0.81 and 0.94 at N = 500, 1000, 2000 and 4000 (the paper uses 4000).
DEFAULT_MASKS = 4000
# D-RISE's masks when none are given (see the README's detector section for the measured
# convergence on a YOLOv8n).
DRISE_MASKS = 2000


def rise_mask(
    index: int, size: tuple[int, int], grid: int, keep: float, seed: int
) -> NDArray[np.float32]:
    """The `index`-th RISE mask (H×W in [0, 1]) of the stream drawn from `seed`."""
    rng = np.random.default_rng((seed, index))
    h, w = size
    cell_h, cell_w = math.ceil(h / grid), math.ceil(w / grid)
    cells = (rng.random((grid, grid)) < keep).astype(np.float32)
    up = cv2.resize(
        cells, ((grid + 1) * cell_w, (grid + 1) * cell_h), interpolation=cv2.INTER_LINEAR
    )
    dy, dx = int(rng.integers(0, cell_h)), int(rng.integers(0, cell_w))
    return np.ascontiguousarray(up[dy : dy + h, dx : dx + w])


class Rise(Attribution):
    """RISE through the same batched masked-forward loop as Score-CAM; no activations are
    read (any bundle works, model-only ones too). Every class comes from the same forwards.

    Args:
        masks: N random masks (forwards). Default: 4000.
        grid: s, cells per side. Default: 7 (the paper's).
        keep: p, the probability that a cell is kept. Default: 0.5.
        seed: the masks' seed.
    """

    name = "rise"

    def __init__(
        self,
        preset: Preset | str = PAPER,
        batch_size: int = 8,
        masks: int = DEFAULT_MASKS,
        grid: int = 7,
        keep: float = 0.5,
        seed: int = 0,
    ) -> None:
        super().__init__(preset, batch_size)
        if masks < 1 or grid < 1 or not 0.0 < keep <= 1.0:
            raise ValueError("RISE needs masks ≥ 1, grid ≥ 1 and 0 < keep ≤ 1")
        self.masks, self.grid, self.keep, self.seed = masks, grid, keep, seed

    def score(
        self,
        x: NDArray[np.float32],
        activations: NDArray[np.float32],
        model: ScoreFn,
        targets: list[int],
        clean_output: NDArray[np.float32],
        output_kind: str = "logits",
        progress: Progress | None = None,
        maps_model: ScoreFn | None = None,
    ) -> Scores:
        """The T maps, flattened, as the "scores" of H·W pixels (`weights` passes them on)."""
        size = x.shape[2:]
        targets_arr = np.asarray(targets, dtype=np.int64)
        total = np.zeros((len(targets), size[0] * size[1]), np.float64)
        batch_masks: dict[int, NDArray[np.float32]] = {}

        def fill(start: int, stop: int, inputs: NDArray[np.float32]) -> None:
            for i in range(start, stop):
                mask = rise_mask(i, size, self.grid, self.keep, self.seed)
                batch_masks[i] = mask
                np.multiply(x[0], mask, out=inputs[i - start])

        def take(start: int, stop: int, out: NDArray[np.float64]) -> None:
            scores = class_scores(out, targets_arr, "probability", output_kind, None)
            scores = np.where(np.isfinite(scores), scores, 0.0)
            masks = np.stack([batch_masks.pop(i).ravel() for i in range(start, stop)])
            total[...] += scores.T @ masks

        run = run_batches(self.masks, self.batch_size, x.shape[1:], fill, model, take, progress)
        values = (total / (self.masks * self.keep)).T
        return Scores(
            values,
            forwards=self.masks,
            masks=self.masks,
            nonfinite=run.nonfinite,
            seconds=run.seconds,
        )

    def weights(self, values: NDArray[np.float64]) -> NDArray[np.float32]:
        return values.astype(np.float32)

    def cam(
        self,
        activations: NDArray[np.float32],
        weights: NDArray[np.float32],
        size: tuple[int, int],
        eigen: bool = False,
        layer_part: bool = False,
    ) -> tuple[NDArray[np.float32], bool]:
        """The map min-max normalised to [0, 1] (RISE's values are relative)."""
        return min_max_normalised(weights.reshape(size).astype(np.float64))
