"""Methods that perturb the activations instead of the image.

They run only the bundle's tail graph (activations → outputs), which at a head layer is a
pooling and a linear layer: tens of milliseconds where exact Score-CAM takes seconds. Each is
a `ScoreCam` whose jobs are perturbed copies of the activations, run through the same batched
loop (`run_batches`); every class comes from the same forwards.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from .engine import (
    GRADCAM,
    PAPER,
    Attribution,
    Scores,
    class_scores,
    form_cam,
    get_preset,
    min_max_normalised,
    run_batches,
)
from .interp import Resizer

if TYPE_CHECKING:
    from .engine import Preset, Progress, ScoreFn

# The 3×3 kernel of ReciproCAM's Gaussian variant: [[1, 2, 1], [2, 4, 2], [1, 2, 1]] / 16.
GAUSSIAN = np.outer([1.0, 2.0, 1.0], [1.0, 2.0, 1.0]).astype(np.float32) / np.float32(16.0)
# Ablation-CAM's ablation value below the activations' minimum when that is not 0.
ABLATION_OFFSET = 1e7


class TailCam(Attribution):
    """Base of the tail-graph methods: `jobs` perturbed activations, scored by the tail."""

    own_preset = PAPER

    def __init__(self, preset: Preset | str | None = None, batch_size: int = 64) -> None:
        chosen = get_preset(preset) if isinstance(preset, str) else preset
        if chosen is not None and chosen.name != self.own_preset:
            raise ValueError(
                f"{self.name} has its own convention ({self.own_preset}); "
                f"the {chosen.name!r} preset does not apply"
            )
        super().__init__(self.own_preset, batch_size)

    # Hooks ---------------------------------------------------------------------------------
    def jobs(self, activations: NDArray[np.float32]) -> int:
        """How many perturbed copies of the activations are scored."""
        raise NotImplementedError

    def fill(
        self, activations: NDArray[np.float32], start: int, stop: int, inputs: NDArray[np.float32]
    ) -> None:
        """Write copies start…stop−1 (each K×h×w) into `inputs`."""
        raise NotImplementedError

    def unit_scores(
        self, outputs: NDArray[np.float64], targets: NDArray[np.int64], output_kind: str
    ) -> NDArray[np.float64]:
        """N×T scores of the targets from N×C tail outputs."""
        raise NotImplementedError

    # Core ----------------------------------------------------------------------------------
    def score(
        self,
        x: NDArray[np.float32],
        activations: NDArray[np.float32],
        model: ScoreFn,
        targets: list[int],
        clean_output: NDArray[np.float32],
        output_kind: str = "logits",
        progress: Progress | None = None,
        maps_model: object = None,
    ) -> Scores:
        """Score every perturbed copy of `activations` with `model`, here the tail graph
        (N×K×h×w activations → N×C outputs). `x` is not used."""
        total = self.jobs(activations)
        wanted = np.asarray(targets, dtype=np.int64)
        values = np.full((total, wanted.size), np.nan, dtype=np.float64)

        def take(start: int, stop: int, out: NDArray[np.float64]) -> None:
            values[start:stop] = self.unit_scores(out, wanted, output_kind)

        run = run_batches(
            total,
            self.batch_size,
            activations.shape,
            lambda a, b, inputs: self.fill(activations, a, b, inputs),
            model,
            take,
            progress,
        )
        return Scores(
            values, forwards=total, masks=total, nonfinite=run.nonfinite, seconds=run.seconds
        )


class ReciproCam(TailCam):
    """ReciproCAM (Byun & Lee 2022, arXiv 2209.14074), as the authors' code and openvino_xai.

    For each of the h·w positions, a feature map that keeps the activations at that position
    and zeros everywhere else (with `gaussian`, the position's activation vector spread over
    its 3×3 neighbourhood with weights [[1, 2, 1], [2, 4, 2], [1, 2, 1]] / 16, cut at the
    borders). The tail's softmax probability of class c is the map's value at the position;
    the h×w map is min-max normalised, then upsampled bilinearly (half-pixel centres). Cost:
    h·w tail forwards.

    Its weights are the h·w position scores, not channel weights.
    """

    name = "reciprocam"

    def __init__(
        self, preset: Preset | str | None = None, batch_size: int = 64, gaussian: bool = False
    ) -> None:
        super().__init__(preset, batch_size)
        self.gaussian = gaussian

    def jobs(self, activations: NDArray[np.float32]) -> int:
        return activations.shape[1] * activations.shape[2]

    def fill(
        self, activations: NDArray[np.float32], start: int, stop: int, inputs: NDArray[np.float32]
    ) -> None:
        inputs[...] = 0.0
        h, w = activations.shape[1:]
        for n, position in enumerate(range(start, stop)):
            i, j = divmod(position, w)
            if not self.gaussian:
                inputs[n, :, i, j] = activations[:, i, j]
                continue
            rows = slice(max(i - 1, 0), min(i + 2, h))
            cols = slice(max(j - 1, 0), min(j + 2, w))
            kernel = GAUSSIAN[
                rows.start - i + 1 : rows.stop - i + 1, cols.start - j + 1 : cols.stop - j + 1
            ]
            inputs[n, :, rows, cols] = activations[:, i, j, None, None] * kernel

    def unit_scores(
        self, outputs: NDArray[np.float64], targets: NDArray[np.int64], output_kind: str
    ) -> NDArray[np.float64]:
        return class_scores(outputs, targets, "probability", output_kind, None)

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
        h, w = activations.shape[1:]
        scores = np.nan_to_num(weights.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        small, degenerate = min_max_normalised(scores.reshape(h, w))
        if degenerate:
            return np.zeros(size, dtype=np.float32), True
        full = Resizer((h, w), size, align_corners=False)(small.astype(np.float64))
        return np.clip(full, 0.0, 1.0).astype(np.float32), False


class AblationCam(TailCam):
    """Ablation-CAM (Ramaswamy & Desai, WACV 2020), as pytorch-grad-cam's `AblationCAM`.

    Channel k is ablated — set to 0 when the activations' minimum is 0 (after a ReLU), else to
    that minimum − 1e7 — and the tail scores the result; on the raw output y (the logit),
    w_k = (y_c − y_c^(k)) / y_c with y_c the full model's output for the image, and the map is
    ReLU(Σ_k w_k A_k) scaled and resized as pytorch-grad-cam does. Channels already equal to
    the ablation value everywhere are not run: ablating them changes nothing, so w_k = 0.
    (pytorch-grad-cam recomputes the minimum after each ablation in a batch, which moves the
    value for all-positive activations; the value here is the one its comment intends.)
    Cost: one tail forward per other channel.
    """

    name = "ablationcam"
    own_preset = GRADCAM

    def __init__(self, preset: Preset | str | None = None, batch_size: int = 64) -> None:
        super().__init__(preset, batch_size)
        self.channels: NDArray[np.int64] = np.zeros(0, dtype=np.int64)
        self.value = 0.0

    def jobs(self, activations: NDArray[np.float32]) -> int:
        low = float(activations.min())
        self.value = 0.0 if low == 0.0 else low - ABLATION_OFFSET
        flat = activations.reshape(activations.shape[0], -1)
        self.channels = np.flatnonzero((flat != np.float32(self.value)).any(axis=1))
        return int(self.channels.size)

    def fill(
        self, activations: NDArray[np.float32], start: int, stop: int, inputs: NDArray[np.float32]
    ) -> None:
        inputs[...] = activations
        for n, channel in enumerate(self.channels[start:stop]):
            inputs[n, channel] = self.value

    def unit_scores(
        self, outputs: NDArray[np.float64], targets: NDArray[np.int64], output_kind: str
    ) -> NDArray[np.float64]:
        return class_scores(outputs, targets, "logit", output_kind, None)

    def score(
        self,
        x: NDArray[np.float32],
        activations: NDArray[np.float32],
        model: ScoreFn,
        targets: list[int],
        clean_output: NDArray[np.float32],
        output_kind: str = "logits",
        progress: Progress | None = None,
        maps_model: object = None,
    ) -> Scores:
        scores = super().score(x, activations, model, targets, clean_output, output_kind, progress)
        clean = class_scores(
            clean_output.astype(np.float64)[None],
            np.asarray(targets, dtype=np.int64),
            "logit",
            output_kind,
            None,
        )[0]
        ablated = np.repeat(clean[None], activations.shape[0], axis=0)
        ablated[self.channels] = scores.values
        with np.errstate(divide="ignore", invalid="ignore"):
            scores.values = (clean[None] - ablated) / clean[None]
        return scores

    def weights(self, values: NDArray[np.float64]) -> NDArray[np.float32]:
        return np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32)

    def cam(
        self,
        activations: NDArray[np.float32],
        weights: NDArray[np.float32],
        size: tuple[int, int],
        eigen: bool = False,
        layer_part: bool = False,
    ) -> tuple[NDArray[np.float32], bool]:
        return form_cam(activations, weights, size, self.preset, eigen, layer_part)
