"""One pass of an explanation over one (possibly augmented) input: the classes it explains,
the method's forwards at each chosen layer, and the layers' maps fused into one per class."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from .bundle.manifest import OutputSpec
from .cam.engine import TORCHCAM, Attribution, Progress, ScoreFn, Scores
from .cam.fusion import fuse, largest_grid
from .detection import Detections
from .detectors import DetectionTarget, detection_target, similarity_of
from .forwards import Forwards, to_probabilities
from .methods import Method
from .segmentation import segmentation_target
from .targets import Target, Top1


@dataclass(frozen=True)
class Layer:
    """One target layer's activations for the input: K×h×w maps, and for token layers the
    leading tokens (P×K) the tail graph needs back."""

    name: str
    maps: NDArray[np.float32]
    prefix: NDArray[np.float32] | None = None


@dataclass
class PassResult:
    """What one input gave: its classes, clean output, scores, forwards and maps."""

    classes: list[int]
    clean: NDArray[np.float32]
    scores: list[float]
    features_seconds: float
    forwards: int = 0
    masks: int = 0
    nonfinite: bool = False
    seconds: dict[str, float] = field(default_factory=dict)
    weights: list[NDArray[np.float32]] = field(default_factory=list)
    cams: list[NDArray[np.float32]] = field(default_factory=list)
    degenerate: list[bool] = field(default_factory=list)
    # A detector's: the detections explained (boxes in input pixels); the scorer's
    # columns are then their positions, not class ids.
    detections: Detections | None = None

    @property
    def columns(self) -> list[int]:
        """The scorer's columns explained: the classes, or a detector's target positions."""
        if self.detections is not None:
            return list(range(len(self.detections)))
        return self.classes

    def add(self, scores: Scores) -> None:
        """Count one scoring's forwards and time."""
        self.forwards += scores.forwards
        self.masks += scores.masks
        self.nonfinite = self.nonfinite or scores.nonfinite
        for key, value in scores.seconds.items():
            self.seconds[key] = self.seconds.get(key, 0.0) + value


@dataclass(frozen=True)
class PassSettings:
    """What every pass of one explanation shares."""

    method: Method
    engine: Attribution
    layers: list[str] | None  # None: every layer of the bundle
    fusion: str
    eigen: bool
    region: NDArray[np.bool_] | None  # at the output's size (segmentation)
    boxes: NDArray[np.float64] | None = None  # given boxes, in input pixels (a detector)
    score_threshold: float = 0.25  # a detector's, or a multi-label model's (0.5)
    max_detections: int = 10


class ProgressOverRuns:
    """Progress over runs (layers, passes) one after another, each of its own size: the
    masked inputs done and the total of the runs so far."""

    def __init__(self, progress: Progress | None) -> None:
        self.progress = progress
        self.offset = 0

    def next_run(self) -> Progress | None:
        """The progress callback of the next run."""
        progress = self.progress
        if progress is None:
            return None
        base = self.offset

        def report(done: int, total: int) -> None:
            self.offset = base + total
            progress(base + done, base + total)

        return report


def run_pass(
    forwards: Forwards,
    x: NDArray[np.float32],
    target: Target,
    settings: PassSettings,
    progress: ProgressOverRuns,
) -> PassResult:
    """One input's maps for its target's classes: the features forward, the method's
    forwards at each chosen layer, the layers' maps fused."""
    started = time.perf_counter()
    layers = read_layers(forwards, x, settings)
    found, scorer, kind = _classes_and_scorer(forwards, x, target, settings, layers, started)
    values: dict[int, NDArray[np.float64]] = {}
    for group in shared_grids(layers, settings.method):
        acts = (
            np.concatenate([layers[i].maps for i in group])
            if len(group) > 1
            else (layers[group[0]].maps)
        )
        scores = settings.engine.score(
            x,
            acts,
            scorer,
            found.columns,
            found.clean,
            kind,
            progress.next_run(),
            _maps_scorer(forwards, x, settings, acts),
        )
        found.add(scores)
        offset = 0
        for i in group:  # rows: channels, or positions (reciprocam)
            rows = layers[i].maps.shape[0] if len(group) > 1 else scores.values.shape[0]
            values[i] = scores.values[offset : offset + rows]
            offset += rows
    _form_maps(forwards, layers, values, settings, found)
    return found


def read_layers(forwards: Forwards, x: NDArray[np.float32], settings: PassSettings) -> list[Layer]:
    """The activations the method reads: none for a black-box method (one empty layer), the
    deepest layer alone, or the chosen layers from one features forward."""
    if not settings.method.needs_layer:
        return [Layer("", np.zeros((0, 1, 1), np.float32))]
    manifest = forwards.bundle.manifest
    if settings.layers is None and len(manifest.targets) == 1:
        raw = forwards.raw_activations(x)
        return [Layer(manifest.layer or "", forwards.as_maps(raw), forwards.prefix(raw))]
    return [
        Layer(name, maps, prefix)
        for name, maps, prefix in forwards.layer_activations(x, settings.layers)
    ]


def _classes_and_scorer(
    forwards: Forwards,
    x: NDArray[np.float32],
    target: Target,
    settings: PassSettings,
    layers: list[Layer],
    started: float,
) -> tuple[PassResult, ScoreFn, str]:
    """The classes explained with their scores, and the function scoring masked inputs
    (with the kind of scores it returns)."""
    manifest = forwards.bundle.manifest
    if forwards.detector:
        return _detections_and_scorer(forwards, x, target, settings, started)
    if manifest.output.segmentation:
        full = forwards.scores(x)[0]
        seg = segmentation_target(full, manifest.output, target, settings.region)
        found = PassResult(
            seg.classes,
            seg.reduce(full[None])[0],
            [seg.probability(full, i) for i in range(len(seg.classes))],
            time.perf_counter() - started,
        )

        def regions(batch: NDArray[np.float32]) -> NDArray[np.float64]:
            return seg.reduce(forwards.scores(batch))

        return found, regions, "probabilities"  # the region sums are the scores themselves
    if settings.method.needs_tail:
        prefix = layers[0].prefix

        def tail(batch: NDArray[np.float32]) -> NDArray[np.float32]:
            return forwards.tail_scores(batch, prefix)

        # The unperturbed output from the tail as well: one features forward and cheap tail
        # forwards, never a second full-model forward.
        scorer: ScoreFn = tail
        clean = tail(layers[0].maps[None])[0]
    else:
        clean, scorer = forwards.scores(x)[0], forwards.batch_scorer()
    probabilities = to_probabilities(clean[None], manifest.output.score_kind)[0]
    classes = classes_of_head(
        target, clean, probabilities, manifest.output, settings.score_threshold
    )
    found = PassResult(
        classes, clean, [float(probabilities[c]) for c in classes], time.perf_counter() - started
    )
    return found, scorer, manifest.output.score_kind


def classes_of_head(
    target: Target,
    output: NDArray[np.floating],
    probabilities: NDArray[np.float64],
    spec: OutputSpec,
    threshold: float,
) -> list[int]:
    """The classes `target` chooses from one image's scores, as its head reads them: a
    binary head by its two classes' probabilities (`Top1`: the positive class), a
    multi-label one with no class given every label at or above `threshold`, most probable
    first."""
    if spec.head == "binary":
        return [1] if isinstance(target, Top1) else target.classes(probabilities, 2)
    if spec.head == "multi-label" and isinstance(target, Top1):
        present = np.flatnonzero(probabilities >= threshold)
        if present.size == 0:
            raise ValueError(
                f"no label at or above the score threshold {threshold:g}: give "
                "a class or top_k, or lower the threshold"
            )
        return [int(i) for i in present[np.argsort(-probabilities[present], kind="stable")]]
    return target.classes(output, spec.classes)


def _detections_and_scorer(
    forwards: Forwards,
    x: NDArray[np.float32],
    target: Target,
    settings: PassSettings,
    started: float,
) -> tuple[PassResult, ScoreFn, str]:
    """A detector's: the detections explained, and the scorer of masked inputs (its scores
    taken as they are)."""
    found = forwards.detections(x, settings.score_threshold)[0]
    chosen = detection_target(
        found, target, settings.boxes, settings.max_detections, forwards.classes
    )
    scoring = DetectionTarget(
        chosen, settings.score_threshold, similarity_of(settings.engine.preset.name)
    )
    result = PassResult(
        [int(c) for c in chosen.labels],
        scoring.scores([found])[0],
        [float(s) for s in chosen.scores],
        time.perf_counter() - started,
        detections=chosen,
    )
    return result, scoring.scorer(forwards), "probabilities"


def _maps_scorer(
    forwards: Forwards, x: NDArray[np.float32], settings: PassSettings, acts: NDArray[np.float32]
) -> Callable | None:
    """A scorer of low-resolution maps with the masking inside a graph, where the method's
    masks are the deepest layer's upsampled maps and such a scorer is open."""
    engine, primary = settings.engine, forwards.bundle.manifest.activation
    if (
        forwards.maps_scorer is None
        or not engine.takes_maps_scorer()
        or primary is None
        or acts.shape[1:] != (primary.height, primary.width)
    ):
        return None
    return forwards.maps_scorer.bind(x, engine.preset.align_corners)


def _form_maps(
    forwards: Forwards,
    layers: list[Layer],
    values: dict[int, NDArray],
    settings: PassSettings,
    found: PassResult,
) -> None:
    """Each class's weights and map at every layer, the layers' maps fused."""
    engine = settings.engine
    size = (forwards.input.height, forwards.input.width)
    grid = largest_grid([layer.maps.shape[1:] for layer in layers])
    at_grid = len(layers) > 1 and settings.fusion == "max" and engine.preset.name == TORCHCAM
    for column in range(len(found.classes)):
        weights, maps = [], []
        for i, layer in enumerate(layers):
            w = engine.weights(values[i][:, column])
            weights.append(w)
            maps.append(
                engine.cam(
                    layer.maps, w, grid if at_grid else size, settings.eigen, len(layers) > 1
                )
            )
        cam, degenerate = fuse(maps, settings.fusion, grid if at_grid else None, size)
        found.cams.append(cam)
        found.degenerate.append(degenerate)
        found.weights.append(np.concatenate(weights))


def shared_grids(layers: list[Layer], method: Method) -> list[list[int]]:
    """The layers scored together: where the method scores every channel on its own, layers
    of one grid share their forwards (identical masks run once); otherwise (channels chosen,
    clustered or given noise per layer) each layer alone."""
    if not method.shares_layer_forwards:
        return [[i] for i in range(len(layers))]
    grids: dict[tuple[int, ...], list[int]] = {}
    for i, layer in enumerate(layers):
        grids.setdefault(layer.maps.shape[1:], []).append(i)
    return list(grids.values())
