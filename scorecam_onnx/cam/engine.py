"""The Score-CAM family on plain arrays: masks, the batched masked-forward loop, weights, maps.

Everything here works on one preprocessed image ``x`` (1×C×H×W) and its target-layer
activations ``A`` (K×h×w); the model is any callable from a batch of inputs to class scores.
Methods differ by one hook each (`ScoreCam` subclasses): which channels get a mask, and how
many perturbed copies of each mask are scored.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import cv2
import numpy as np
from numpy.typing import NDArray

from .interp import Resizer

# Scores of a batch of inputs (float32 from a model; float64 sums over a segmentation region).
ScoreFn = Callable[[NDArray[np.float32]], NDArray[np.float32] | NDArray[np.float64]]
Progress = Callable[[int, int], None]

PAPER, GRADCAM, TORCHCAM = "paper", "pytorch-grad-cam", "torchcam"


@dataclass(frozen=True)
class Preset:
    """A Score-CAM convention: `paper` (the authors' code), `pytorch-grad-cam` or `torchcam`.

    Attributes:
        name: the preset's name.
        align_corners: the bilinear convention used to upsample masks.
        normalise_at_input: min-max normalise masks after upsampling (else before).
        epsilon: added to the normalising denominator of the masks.
        score: "probability" (softmax of class c), "logit", or "logit-delta" (minus the
            logit of the unmasked image).
        channel_softmax: turn channel scores into weights with a softmax over channels.
        skip_constant: constant channels get no forward and weigh 0 (else they share the
            forward of one all-zero mask).
    """

    name: str
    align_corners: bool
    normalise_at_input: bool
    epsilon: float
    score: str
    channel_softmax: bool
    skip_constant: bool


PRESETS: dict[str, Preset] = {
    PAPER: Preset(PAPER, False, True, 0.0, "probability", False, True),
    GRADCAM: Preset(GRADCAM, True, True, 1e-8, "logit", True, False),
    TORCHCAM: Preset(TORCHCAM, False, False, 1e-8, "logit-delta", True, False),
}


def at_least_one(name: str, value: int) -> int:
    """`value`, or a ValueError naming the setting when it is below 1."""
    if value < 1:
        raise ValueError(f"{name} must be at least 1, got {value}")
    return value


def get_preset(name: str) -> Preset:
    """The preset called `name`, or a ValueError listing the choices."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}: choose one of {', '.join(PRESETS)}") from None


@dataclass
class Scores:
    """Channel scores of one image for several target classes.

    Attributes:
        values: K×T scores (NaN where a channel got no forward, or only non-finite outputs).
        forwards: masked inputs sent through the model.
        masks: distinct masks built (one per scored channel, plus the shared zero mask).
        nonfinite: the model returned NaN or Inf for some masked input.
        seconds: time spent building masked inputs and running the model.
    """

    values: NDArray[np.float64]
    forwards: int = 0
    masks: int = 0
    nonfinite: bool = False
    seconds: dict[str, float] = field(default_factory=dict)


class Attribution:
    """What every method's engine shares: a preset, a batch size, the batched scoring of
    its perturbed inputs (`score`), channel weights (`weights`) and the map (`cam`).

    Args:
        preset: a `Preset` or its name.
        batch_size: inputs per model call; memory is bounded by it, never by the work.
    """

    name = ""

    def __init__(self, preset: Preset | str = PAPER, batch_size: int = 8) -> None:
        self.preset = get_preset(preset) if isinstance(preset, str) else preset
        self.batch_size = at_least_one("batch_size", batch_size)

    def takes_maps_scorer(self) -> bool:
        """Whether `score` can use a scorer of low-resolution maps that upsamples and masks
        inside a graph (see `ScoreCam.score`)."""
        return False

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
        """Run the method's forwards and return its scores for every target class."""
        raise NotImplementedError

    def weights(self, values: NDArray[np.float64]) -> NDArray[np.float32]:
        """Channel weights from the K channel scores of one class (NaN: no forward → 0)."""
        scored = np.isfinite(values)
        weights = np.zeros(values.shape, dtype=np.float64)
        if not scored.any():
            return weights.astype(np.float32)
        if self.preset.channel_softmax:
            v = values[scored]
            e = np.exp(v - v.max())
            weights[scored] = e / e.sum()
        else:
            weights[scored] = values[scored]
        return weights.astype(np.float32)

    def cam(
        self,
        activations: NDArray[np.float32],
        weights: NDArray[np.float32],
        size: tuple[int, int],
        eigen: bool = False,
        layer_part: bool = False,
    ) -> tuple[NDArray[np.float32], bool]:
        """The saliency map at input resolution in [0, 1], and whether it is degenerate;
        `eigen`: the weighted activations' first principal component instead of their sum;
        `layer_part`: one layer's part of a fused map (see `form_cam`)."""
        return form_cam(activations, weights, size, self.preset, eigen, layer_part)


class ScoreCam(Attribution):
    """Score-CAM (Wang et al., CVPR-W 2020, arXiv 1910.01279) on arrays.

    Each non-constant channel A_k is upsampled to the input size and min-max normalised into a
    mask M_k; the masked input x ⊙ M_k is scored by the model; the scores weigh the
    activations into the map L = ReLU(Σ_k w_k · A_k) (upsampled and normalised per preset).
    Subclasses override `select` (which channels), `group` (which share a forward) or
    `perturb` (copies of each mask).
    """

    name = "scorecam"
    samples = 1
    # Constant channels are scored (as one shared all-zero mask) by presets that keep them; a
    # method that scores only some channels turns this off so the others weigh 0.
    scores_constant = True
    # Whether `perturb` may be applied to low-resolution maps before upsampling.
    perturbs_linearly = True
    # Whether channels with identical masks may share forwards (not when `perturb` draws
    # something per channel).
    dedupe = True

    def takes_maps_scorer(self) -> bool:
        return self.perturbs_linearly

    # Hooks -------------------------------------------------------------------------------
    def select(self, activations: NDArray[np.float32], varying: NDArray[np.bool_]) -> NDArray:
        """Indices of the channels that are scored.

        Default: every non-constant channel, and the constant ones too when the preset keeps
        them (their all-zero masks are then one forward, see `dedupe`).
        """
        if self.scores_constant and not self.preset.skip_constant:
            return np.arange(varying.size)
        return np.flatnonzero(varying)

    def perturb(
        self, masks: NDArray[np.float32], channels: NDArray[np.int64], sample: int
    ) -> NDArray[np.float32]:
        """The `sample`-th copy of the masks of `channels` (default: the masks themselves)."""
        return masks

    def group(
        self, flat: NDArray[np.float32], scaled: NDArray[np.float32]
    ) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float32]]:
        """Which chosen channels share one masked forward: (a member of each group, each
        channel's group, each group's low-resolution map).

        Default: channels with identical masks (see `dedupe`), each group scored with its
        own mask; every channel of a group gets the group's score.
        """
        first, group = (
            _distinct(flat) if self.dedupe else (np.arange(flat.shape[0]), np.arange(flat.shape[0]))
        )
        return first, group, scaled[first]

    # Core --------------------------------------------------------------------------------
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
        """Run the masked forwards and return the channel scores for every target class.

        Args:
            x: the preprocessed image, 1×C×H×W.
            activations: K×h×w activations of the target layer for `x`.
            model: maps an N×C×H×W batch to N×C class scores.
            targets: class indices to score (all from the same forwards).
            clean_output: the model's C outputs for `x` itself.
            output_kind: "logits" or "probabilities" (what `model` returns).
            progress: called with (masked inputs done, total) after every batch.
            maps_model: optional; maps N×h×w normalised low-resolution maps to N×C scores,
                upsampling and masking inside the model (used on GPUs). Taken only by
                methods whose perturbation commutes with upsampling.
        """
        fused = maps_model is not None and self.perturbs_linearly
        jobs = self._jobs(x, activations)
        targets_arr = np.asarray(targets, dtype=np.int64)
        clean = class_scores(
            clean_output[None].astype(np.float64), targets_arr, self.preset.score, output_kind, None
        )[0]
        sums = np.zeros((jobs.first.size, len(targets)), dtype=np.float64)
        counts = np.zeros((jobs.first.size, len(targets)), dtype=np.int64)

        def take(start: int, stop: int, out: NDArray[np.float64]) -> None:
            scores = class_scores(out, targets_arr, self.preset.score, output_kind, clean)
            # A non-finite score carries no information: that forward does not count.
            usable = np.isfinite(scores)
            np.add.at(sums, jobs.group_of[start:stop], np.where(usable, scores, 0.0))
            np.add.at(counts, jobs.group_of[start:stop], usable)

        run = run_batches(
            jobs.group_of.size,
            self.batch_size,
            activations.shape[1:] if fused else x.shape[1:],
            lambda start, stop, inputs: self._fill(jobs, x, fused, start, stop, inputs),
            maps_model if fused and maps_model is not None else model,
            take,
            progress,
        )
        values = np.full((activations.shape[0], len(targets)), np.nan, dtype=np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            values[jobs.chosen] = np.where(counts > 0, sums / counts, np.nan)[jobs.group]
        return Scores(
            values,
            forwards=jobs.group_of.size,
            masks=jobs.first.size,
            nonfinite=run.nonfinite,
            seconds=run.seconds,
        )

    def _jobs(self, x: NDArray[np.float32], activations: NDArray[np.float32]) -> _MaskJobs:
        """The masked forwards to run: the chosen channels, grouped, each group's map, and
        the (group, sample) of every forward, distinct masks in channel order."""
        flat = activations.reshape(activations.shape[0], -1)
        chosen = self.select(activations, flat.max(axis=1) > flat.min(axis=1))
        builder = _MaskBuilder(activations, x.shape[2:], self.preset)
        first, group, maps = self.group(flat[chosen], builder.scaled(chosen))
        order = np.argsort(first, kind="stable")
        return _MaskJobs(
            chosen,
            builder,
            first,
            group,
            maps,
            np.repeat(order, self.samples),
            np.tile(np.arange(self.samples), order.size),
        )

    def _fill(
        self,
        jobs: _MaskJobs,
        x: NDArray[np.float32],
        fused: bool,
        start: int,
        stop: int,
        inputs: NDArray[np.float32],
    ) -> None:
        """Forwards start…stop−1 into `inputs`: masked images, or with `fused` the
        low-resolution maps a maps scorer upsamples and applies itself."""
        groups = jobs.group_of[start:stop]
        samples = jobs.sample_of[start:stop]
        masks = jobs.maps[groups]
        if not fused:
            masks = jobs.builder.resize(masks)
        if self.samples > 1:
            for s in np.unique(samples):
                pick = samples == s
                masks[pick] = self.perturb(
                    masks[pick], jobs.chosen[jobs.first[groups[pick]]], int(s)
                )
        if fused:
            inputs[...] = masks
        else:
            np.multiply(x, masks[:, None], out=inputs)


@dataclass
class _MaskJobs:
    """The masked forwards of one image: chosen channels, their groups (`first` member of
    each, each channel's `group`, each group's low-resolution map) and per forward its group
    and sample."""

    chosen: NDArray[np.int64]
    builder: _MaskBuilder
    first: NDArray[np.int64]
    group: NDArray[np.int64]
    maps: NDArray[np.float32]
    group_of: NDArray[np.int64]
    sample_of: NDArray[np.int64]


@dataclass
class BatchRun:
    """What `run_batches` did: whether some output was NaN or Inf, and where time went."""

    nonfinite: bool
    seconds: dict[str, float]


class Pipelined:
    """A scoring function that can also `submit` a batch and wait for it later."""

    def __init__(
        self,
        call: Callable[[NDArray[np.float32]], NDArray[np.float32]],
        submit: Callable[[NDArray[np.float32]], Callable[[], NDArray[np.float32]]],
        in_flight: int,
    ) -> None:
        self.call, self.submit, self.in_flight = call, submit, in_flight

    def __call__(self, batch: NDArray[np.float32]) -> NDArray[np.float32]:
        return self.call(batch)


def run_batches(
    total: int,
    batch_size: int,
    shape: tuple[int, ...],
    fill: Callable[[int, int, NDArray[np.float32]], None],
    model: ScoreFn,
    take: Callable[[int, int, NDArray[np.float64]], None],
    progress: Progress | None = None,
) -> BatchRun:
    """The one loop of batched forwards that every perturbation method runs.

    Jobs 0…total−1 go through `model` `batch_size` at a time: `fill(start, stop, inputs)`
    writes the inputs of jobs start…stop−1 into a reused buffer of shape (B, *shape), so
    memory is bounded by the batch size, never by the number of jobs; `take(start, stop,
    outputs)` receives the model's N×C outputs. `progress(done, total)` follows each batch.
    (Building the next batch in a second thread while the model runs was measured slower on
    a 2-core machine: it competes with ONNX Runtime's own threads.)

    A `model` with `submit(inputs) -> wait` and `in_flight` (a served model) gets up to
    `in_flight` batches at once: the next batch is built while earlier ones are on the
    server, in `in_flight` buffers.
    """
    submit = getattr(model, "submit", None)
    depth = max(1, int(getattr(model, "in_flight", 1))) if submit is not None else 1
    rows = min(batch_size, max(total, 1))
    buffers = [np.empty((rows, *shape), dtype=np.float32) for _ in range(depth)]
    build_seconds = forward_seconds = 0.0
    nonfinite = False
    pending: deque[tuple[int, int, Callable[[], NDArray]]] = deque()

    def finish() -> None:
        nonlocal nonfinite, forward_seconds
        start, stop, wait = pending.popleft()
        t0 = time.perf_counter()
        out = np.asarray(wait(), dtype=np.float64)
        forward_seconds += time.perf_counter() - t0
        nonfinite = nonfinite or not np.isfinite(out).all()
        take(start, stop, out)
        if progress is not None:
            progress(stop, total)

    for index, start in enumerate(range(0, total, batch_size)):
        stop = min(start + batch_size, total)
        if len(pending) == depth:
            finish()
        t0 = time.perf_counter()
        inputs = buffers[index % depth][: stop - start]
        fill(start, stop, inputs)
        t1 = time.perf_counter()
        build_seconds += t1 - t0
        if submit is not None:
            wait = submit(inputs)
        else:  # in process: the forward runs now, taken before the next
            result = model(inputs)
            wait = lambda result=result: result  # noqa: E731 - a finished forward
        pending.append((start, stop, wait))
        forward_seconds += time.perf_counter() - t1
    while pending:
        finish()
    return BatchRun(nonfinite, {"masks": build_seconds, "forwards": forward_seconds})


def form_cam(
    activations: NDArray[np.float32],
    weights: NDArray[np.float32],
    size: tuple[int, int],
    preset: Preset,
    eigen: bool = False,
    layer_part: bool = False,
) -> tuple[NDArray[np.float32], bool]:
    """Weigh the activations into a map at input resolution, as `preset` does.

    With `eigen`, the weighted sum is replaced by the projection of the weighted activations
    on their first principal component (`principal_projection`). With `layer_part`, the map
    is one layer's part of pytorch-grad-cam's fusion: for its preset, the map before the
    last ReLU and min-max (which the fusion applies to the mean). Returns the map in [0, 1]
    and True when it is degenerate (all zero or constant); a degenerate map is all zeros,
    never NaN.
    """
    h, w = activations.shape[1:]
    if eigen:
        weighted = weights.astype(np.float64)[:, None, None] * activations.astype(np.float64)
        summed = principal_projection(weighted)
    else:
        summed = np.tensordot(weights.astype(np.float64), activations.astype(np.float64), axes=1)
    summed = np.nan_to_num(summed, nan=0.0, posinf=0.0, neginf=0.0)
    if preset.name == PAPER:
        # Σ s_k·Up(A_k) = Up(Σ s_k·A_k): upsampling is linear.
        full = np.maximum(Resizer((h, w), size, align_corners=False)(summed), 0.0)
        return min_max_normalised(full)
    positive = np.maximum(summed, 0.0)
    if positive.max() <= 0.0 or positive.max() == positive.min():
        return np.zeros(size, dtype=np.float32), True
    if preset.name == GRADCAM:
        scaled = _scale(positive, 1e-7).astype(np.float32)
        full = cv2.resize(scaled, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
        if layer_part:
            return full.astype(np.float32), False
        result = _scale(np.maximum(full, 0.0), 1e-7)
    else:
        scaled = positive - positive.min()
        scaled = scaled / (scaled.max() + 1e-8)
        result = Resizer((h, w), size, align_corners=False)(scaled)
    result = np.clip(result, 0.0, 1.0).astype(np.float32)
    return result, bool(result.max() <= 0.0 or result.max() == result.min())


def principal_projection(maps: NDArray[np.floating]) -> NDArray[np.float64]:
    """K×h×w maps projected on their first principal component (h×w), as pytorch-grad-cam's
    `get_2d_projection`: NaN as 0, the h·w positions × K channels centred per channel, an
    SVD, the positions projected on the first right singular vector. The sign is the SVD's
    own (no correction), as there; the economy SVD gives the same first vector as the full
    one that it computes, without the (h·w)² matrix of left vectors."""
    k = maps.shape[0]
    positions = np.nan_to_num(maps.astype(np.float64), nan=0.0).reshape(k, -1).T
    centred = positions - positions.mean(axis=0)
    if not np.any(centred):
        return np.zeros(maps.shape[1:], np.float64)
    direction = np.linalg.svd(centred, full_matrices=False)[2][0]
    return (centred @ direction).reshape(maps.shape[1:])


def _scale(cam: NDArray, epsilon: float) -> NDArray:
    shifted = cam - cam.min()
    return shifted / (epsilon + shifted.max())


def min_max_normalised(cam: NDArray[np.floating]) -> tuple[NDArray[np.float32], bool]:
    """The map scaled to [0, 1], and whether it was constant (then all zeros)."""
    low, high = float(cam.min()), float(cam.max())
    if not high > low:
        return np.zeros(cam.shape, dtype=np.float32), True
    return ((cam - low) / (high - low)).astype(np.float32), False


def class_scores(
    out: NDArray[np.float64],
    targets: NDArray[np.int64],
    kind: str,
    output_kind: str,
    clean: NDArray[np.float64] | None,
) -> NDArray[np.float64]:
    """N×T scores of the requested kind from N×C model outputs (NaN where undefined).

    `output_kind` is "logits" or "probabilities" of exclusive classes, or the same prefixed
    "sigmoid-" (independent labels) or "binary-" (one logit of class 1, N×1): a probability
    is then the label's sigmoid (class 0 of a binary head: its complement), and a binary
    head's logit of class 0 is the negated logit (pytorch-grad-cam's
    `BinaryClassifierOutputTarget`)."""
    head, _, form = output_kind.rpartition("-")
    if kind == "probability":
        if head:
            return _independent(out, targets, head, form)
        if form == "probabilities":
            return out[:, targets]
        with np.errstate(invalid="ignore", over="ignore"):
            top = out.max(axis=1, keepdims=True)
            log_norm = top + np.log(np.exp(out - top).sum(axis=1, keepdims=True))
            return np.exp(out[:, targets] - log_norm)
    if head == "binary":
        picked = out[:, :1] * np.where(targets == 1, 1.0, -1.0)[None, :]
    else:
        picked = out[:, targets]
    if kind == "logit-delta" and clean is not None:
        return picked - clean[None]
    return picked


def sigmoid(values: NDArray[np.floating]) -> NDArray[np.float64]:
    """The logistic function, without overflow."""
    v = np.asarray(values, np.float64)
    with np.errstate(over="ignore"):
        return np.where(v >= 0, 1.0 / (1.0 + np.exp(-v)), np.exp(v) / (1.0 + np.exp(v)))


def _independent(
    out: NDArray[np.float64], targets: NDArray[np.int64], head: str, form: str
) -> NDArray[np.float64]:
    """Each target's own probability: a label's sigmoid, or a binary head's class."""
    if head == "binary":
        positive = out[:, :1] if form == "probabilities" else sigmoid(out[:, :1])
        return np.where(targets[None, :] == 1, positive, 1.0 - positive)
    picked = out[:, targets]
    return picked if form == "probabilities" else sigmoid(picked)


class _MaskBuilder:
    """Normalises channels into masks as a preset defines them; `resize` upsamples them.

    Interpolation rows sum to one, so ``Up(A) − m = Up(A − m)``: masks are normalised at
    activation resolution with the min and max of the *upsampled* map, then upsampled once.
    Those extremes lie where the interpolation changes cells (bilinear is linear inside a
    cell), so they are read off a small sub-grid instead of the full H×W map.
    """

    def __init__(
        self, activations: NDArray[np.float32], size: tuple[int, int], preset: Preset
    ) -> None:
        self.preset = preset
        self.activations = activations.astype(np.float32, copy=False)
        h, w = activations.shape[1:]
        self.resize = Resizer((h, w), size, preset.align_corners)
        rows = self.resize.rows
        cols_t = self.resize.cols_t
        self.edge_rows = np.ascontiguousarray(rows[_cell_ends(rows)])
        self.edge_cols_t = np.ascontiguousarray(cols_t[:, _cell_ends(cols_t.T)])

    def scaled(self, channels: NDArray[np.int64]) -> NDArray[np.float32]:
        """B×h×w maps whose upsampling gives the masks (normalised at activation resolution).

        A constant channel gives an all-zero map, whatever the epsilon.
        """
        maps = self.activations[channels]
        eps = np.float32(self.preset.epsilon)
        if self.preset.normalise_at_input:
            edges = np.matmul(np.matmul(self.edge_rows, maps), self.edge_cols_t)
        else:
            edges = maps
        if not channels.size:
            return maps
        flat = edges.reshape(edges.shape[0], -1)
        low = flat.min(axis=1)
        span = flat.max(axis=1) - low
        scale = np.zeros_like(span)
        usable = span > 0
        scale[usable] = 1.0 / (span[usable] + eps)
        return (maps - low[:, None, None]) * scale[:, None, None]


def _distinct(maps: NDArray[np.float32]) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Group channels (rows of flattened maps) whose masks are identical.

    Channels that are increasing affine images of each other (a·A + b, a > 0) give the same
    mask (for `paper`; up to the ε in the denominator for the other presets), so one forward
    serves them all. They are found by their min-max normalised maps, rounded to 1e-6 (about
    float32's resolution); constant channels all normalise to zeros.

    Returns the first channel of each group, and each channel's group.
    """
    if not maps.shape[0]:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty
    values = maps.astype(np.float64)
    low = values.min(axis=1, keepdims=True)
    span = values.max(axis=1, keepdims=True) - low
    unit = np.round(np.divide(values - low, span, out=np.zeros_like(values), where=span > 0), 6)
    _, first, group = np.unique(unit, axis=0, return_index=True, return_inverse=True)
    return first, group.ravel()


def _cell_ends(matrix: NDArray[np.float32]) -> NDArray[np.int64]:
    """Output indices that start or end a run of rows interpolating from the same inputs."""
    support = [tuple(np.flatnonzero(row)) for row in matrix]
    ends = {0, len(support) - 1}
    for i in range(1, len(support)):
        if support[i] != support[i - 1]:
            ends.update((i - 1, i))
    return np.array(sorted(ends), dtype=np.int64)
