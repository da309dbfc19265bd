"""Compare explanation methods on a set of images with the paper's faithfulness metrics."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from .. import metrics as curves
from ..cam.interp import Resizer
from ..detection import Detections, drise_similarity
from ..detectors import DetectionTarget, detection_target
from ..errors import ImageError
from ..explainer import Explainer, Explanation
from ..forwards import Forwards
from ..images import ImageLike, to_original
from ..methods import Method, as_method
from ..metrics import DEFAULT_METRICS, METRICS
from ..options import DETECTION_THRESHOLD, ExplainOptions
from ..pictures import Picture, model_input
from ..targets import Class, Target, TopK
from . import plots, road

BASELINES = ("random", "center")


@dataclass
class MethodReport:
    """Mean metrics of one method over the evaluated images."""

    method: str
    average_drop: float
    increase: float
    deletion: float | None
    insertion: float | None
    pointing: float | None
    seconds: float
    forwards: float
    deletion_curve: list[float] = field(default_factory=list)
    insertion_curve: list[float] = field(default_factory=list)
    road_morf: float | None = None
    road_lerf: float | None = None
    road_combined: float | None = None


@dataclass
class Evaluation:
    """The result of `evaluate`: one row per method, plus what was measured on."""

    rows: list[MethodReport]
    images: list[str]
    step_fraction: float
    metrics: tuple[str, ...] = DEFAULT_METRICS

    def to_dict(self) -> dict[str, object]:
        return {
            "images": self.images,
            "step_fraction": self.step_fraction,
            "metrics": list(self.metrics),
            "methods": [asdict(r) for r in self.rows],
        }

    def table(self) -> tuple[list[str], list[list[str]]]:
        """The report's column heads and, per method, its cells as printed: the metrics
        asked for, seconds and forwards per image."""
        columns = [
            (name, head, form)
            for name, head, form in _COLUMNS
            if name.removesuffix("-morf").removesuffix("-lerf").removesuffix("-combined")
            in self.metrics
        ]
        if any(r.pointing is not None for r in self.rows):
            columns.append(("pointing", "Pointing ↑", "pct"))
        head = ["method", *(h for _, h, _ in columns), "s / image", "forwards / image"]
        rows = []
        for r in self.rows:
            cells = [r.method]
            for name, _, form in columns:
                value = getattr(r, name.replace("-", "_"))
                cells.append(
                    "-"
                    if value is None
                    else f"{value * 100:.1f}"
                    if form == "pct"
                    else format(value, form)
                )
            rows.append([*cells, f"{r.seconds:.2f}", f"{r.forwards:.0f}"])
        return head, rows

    def markdown(self) -> str:
        """The table in the shape of the paper's tables, with the metrics asked for."""
        head, rows = self.table()
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(cells) + " |" for cells in rows]
        return "\n".join(lines) + "\n"


# (metric, column head, format) of the report's table; ROAD adds three columns.
_COLUMNS = [
    ("average-drop", "Average Drop ↓", ".1f"),
    ("increase", "Increase ↑", ".1f"),
    ("deletion", "Deletion ↓", ".3f"),
    ("insertion", "Insertion ↑", ".3f"),
    ("road-morf", "ROAD MoRF ↓", ".4f"),
    ("road-lerf", "ROAD LeRF ↑", ".4f"),
    ("road-combined", "ROAD combined ↑", ".4f"),
]


def baseline_map(
    name: str, size: tuple[int, int], grid: tuple[int, int] = (7, 7), seed: int = 0
) -> NDArray[np.float32]:
    """Sanity baselines at `size`.

    "random": uniform noise on the activation `grid`, upsampled bilinearly (as smooth as a
    CAM, so deletion does not reward scattered pixels); "center": a centred Gaussian with a
    standard deviation of a quarter of each side.
    """
    h, w = size
    if name == "random":
        coarse = np.random.default_rng(seed).random(grid, dtype=np.float32)
        return Resizer(grid, size, align_corners=False)(coarse)
    if name == "center":
        ys = (np.arange(h) - (h - 1) / 2) / (h / 4)
        xs = (np.arange(w) - (w - 1) / 2) / (w / 4)
        return np.exp(-0.5 * (ys[:, None] ** 2 + xs[None, :] ** 2)).astype(np.float32)
    raise ValueError(f"unknown baseline {name!r}: choose one of {', '.join(BASELINES)}")


@dataclass(frozen=True)
class EvaluationPlan:
    """What `evaluate` measures.

    Args:
        methods: method objects or names (see `scorecam_onnx.methods`).
        baselines: sanity maps scored beside them (`BASELINES`).
        metrics: among `METRICS`; Average Drop and Increase are always measured (one
            forward), the others only when named. "road" needs SciPy (extra ``metrics``).
        step_fraction: share of pixels per deletion/insertion step. Default: 1 %.
        road_noise: the imputation noise of ROAD (seeded per image).
        options: passed to `explain` (eigen smoothing only for methods that weigh
            activations); the rows are named "METHOD +aug", "METHOD +eigen".
    """

    methods: Sequence[Method | str] = ("scorecam",)
    baselines: Sequence[str] = BASELINES
    metrics: Sequence[str] = DEFAULT_METRICS
    step_fraction: float = 0.01
    road_noise: float = road.NOISE
    options: ExplainOptions = field(default_factory=ExplainOptions)

    def runs(self) -> list[tuple[str, Method, ExplainOptions]]:
        """Each method's row name, object and options."""
        found = []
        for given in self.methods:
            method = as_method(given)
            eigen = self.options.eigen_smooth and method.weighs_activations
            options = replace(self.options, eigen_smooth=eigen)
            label = method.name + " +aug" * options.aug_smooth + " +eigen" * eigen
            found.append((label, method, options))
        return found


@dataclass(frozen=True)
class EvaluationCallbacks:
    """Where `evaluate` reports.

    Args:
        on_step: called with a short description before each method on each image.
        progress: passed to `explain` (masked inputs done, total).
        on_error: called with (index, error) for an image that cannot be read, which is then
            left out; without it, the error is raised.
        on_map: called with (index, row name, RGB image, explanation) for each method's map.
    """

    on_step: Callable[[str], None] | None = None
    progress: Callable[[int, int], None] | None = None
    on_error: Callable[[int, ImageError], None] | None = None
    on_map: Callable[[int, str, NDArray[np.uint8], Explanation], None] | None = None


@dataclass
class _Measured:
    """One row's measurements over the images."""

    clean: list[float] = field(default_factory=list)  # the class's probability
    masked: list[float] = field(default_factory=list)  # … on the image times its map
    deletion: list = field(default_factory=list)
    insertion: list = field(default_factory=list)
    pointing: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    forwards: list[int] = field(default_factory=list)
    road: list = field(default_factory=list)


def evaluate(
    explainer: Explainer,
    images: Sequence[ImageLike],
    plan: EvaluationPlan | None = None,
    boxes: Sequence[Sequence[Sequence[float]] | None] | None = None,
    callbacks: EvaluationCallbacks | None = None,
) -> Evaluation:
    """Explain each image's top-1 class with every method of `plan` and score the maps.

    Args:
        explainer: the bundle's explainer (its session also scores the perturbed images).
        images: paths, bytes or arrays (any format `Explainer.read` reads).
        plan: the methods, baselines and metrics (`EvaluationPlan`).
        boxes: per image, the object's boxes (x0, y0, x1, y1) in original pixels, or None.
        callbacks: progress and errors (`EvaluationCallbacks`).
    """
    plan, callbacks = plan or EvaluationPlan(), callbacks or EvaluationCallbacks()
    _check_plan(images, plan)
    runs = plan.runs()
    names = [*[label for label, _, _ in runs], *plan.baselines]
    measured = {name: _Measured() for name in names}
    evaluated: list[int] = []
    for index, image in enumerate(images):
        try:
            picture = explainer.read(image, plan.options.frame)
            x = model_input(picture, explainer.forwards.input)
        except ImageError as exc:
            if callbacks.on_error is None:
                raise
            callbacks.on_error(index, exc)
            continue
        evaluated.append(index)
        image_boxes = boxes[index] if boxes is not None else None
        measured_image = _measured_image(explainer, x, index, image_boxes)
        for name, small, full, forwards, seconds in _maps(
            explainer, picture, measured_image, runs, plan, callbacks, len(images)
        ):
            _measure(explainer, measured_image, small, full, measured[name], plan)
            measured[name].seconds.append(seconds)
            measured[name].forwards.append(forwards)
    if not evaluated:
        raise ValueError("no image could be read; nothing to evaluate")
    rows = [_report(name, measured[name]) for name in names]
    labels = [
        str(images[n]) if isinstance(images[n], str | Path) else f"image {n + 1}" for n in evaluated
    ]
    return Evaluation(rows, labels, plan.step_fraction, tuple(plan.metrics))


def _check_plan(images: Sequence[ImageLike], plan: EvaluationPlan) -> None:
    if not images:
        raise ValueError("no images to evaluate")
    unknown = [m for m in plan.metrics if m not in METRICS]
    if unknown:
        raise ValueError(f"unknown metric {', '.join(unknown)}: choose from {', '.join(METRICS)}")
    if "road" in plan.metrics:
        road.import_scipy()


@dataclass(frozen=True)
class Reference:
    """What an image is measured on: a classifier's top-1 class, scored by its probability,
    or a detector's best detection, scored by D-RISE's similarity of each perturbed input's
    detections with it (at the default score threshold).

    Attributes:
        target: the target explained.
        top: the class id of the top-1 class or the best detection.
        column: the target's column in the scorer's output.
        detection: a detector's best detection (input pixels), else None.
    """

    target: Target
    top: int
    column: int
    detection: Detections | None = None

    def scorer(self, forwards: Forwards) -> Callable[[NDArray[np.float32]], NDArray]:
        """Perturbed inputs → scores (N×C, or N×1 for a detection) through `forwards`."""
        if self.detection is None:
            return forwards.probabilities
        threshold = DETECTION_THRESHOLD
        return DetectionTarget(self.detection, threshold, drise_similarity).scorer(forwards)


def reference_of(explainer: Explainer, x: NDArray[np.float32]) -> Reference:
    """The `Reference` of one preprocessed image (one forward)."""
    forwards = explainer.forwards
    if forwards.detector:
        found = forwards.detections(x, DETECTION_THRESHOLD)[0]
        best = detection_target(found, TopK(1), None, 1, forwards.classes)
        return Reference(TopK(1), int(best.labels[0]), 0, best)
    class_id = int(np.argmax(forwards.probabilities(x)[0]))
    return Reference(Class(class_id), class_id, class_id)


@dataclass(frozen=True)
class _Image:
    """One image being measured: its input, what it is measured on, the scorer of perturbed
    inputs, and the target's score on the image itself."""

    x: NDArray[np.float32]
    reference: Reference
    score: Callable[[NDArray[np.float32]], NDArray]
    probability: float
    index: int
    boxes: Sequence[Sequence[float]] | None


def _measured_image(
    explainer: Explainer,
    x: NDArray[np.float32],
    index: int,
    boxes: Sequence[Sequence[float]] | None,
) -> _Image:
    reference = reference_of(explainer, x)
    score = reference.scorer(explainer.forwards)
    return _Image(x, reference, score, float(score(x)[0, reference.column]), index, boxes)


def _maps(
    explainer: Explainer,
    picture: Picture,
    image: _Image,
    runs: list[tuple[str, Method, ExplainOptions]],
    plan: EvaluationPlan,
    callbacks: EvaluationCallbacks,
    count: int,
):
    """Each row's (name, map at input size, map at original size, forwards, seconds) for
    the image's top-1 class."""
    x, index = image.x, image.index
    rgb = explainer.display(picture) if callbacks.on_map is not None else None
    for name, method, options in runs:
        if callbacks.on_step is not None:
            callbacks.on_step(f"image {index + 1}/{count}: {name}")
        started = time.perf_counter()
        res = explainer.explain(
            picture, image.reference.target, method, options, callbacks.progress
        )[0]
        if callbacks.on_map is not None and rgb is not None:
            callbacks.on_map(index, name, rgb, res)
        yield name, res.saliency_input, res.saliency, res.forwards, (time.perf_counter() - started)
    for name in plan.baselines:
        if callbacks.on_step is not None:
            callbacks.on_step(f"image {index + 1}/{count}: {name}")
        started = time.perf_counter()
        act = explainer.bundle.manifest.activation
        small = baseline_map(
            name, x.shape[2:], (act.height, act.width) if act else (7, 7), seed=index
        )
        full = to_original(small, picture.shape, explainer.bundle.manifest.input)
        yield name, small, full, 0, time.perf_counter() - started


def _measure(
    explainer: Explainer,
    image: _Image,
    small: NDArray[np.float32],
    full: NDArray[np.float32],
    row: _Measured,
    plan: EvaluationPlan,
) -> None:
    """The metrics of one map of one image."""
    probabilities = image.score
    x, class_id, index, image_boxes = image.x, image.reference.column, image.index, image.boxes
    row.clean.append(image.probability)
    row.masked.append(probabilities(x * small[None, None])[0, class_id])
    for mode in ("deletion", "insertion"):
        if mode in plan.metrics:
            getattr(row, mode).append(
                curves.causal_curve(
                    probabilities,
                    x,
                    small,
                    class_id,
                    mode,
                    plan.step_fraction,
                    explainer.batch_size,
                )
            )
    if "road" in plan.metrics:
        row.road.append(
            road.road(
                probabilities,
                x,
                small,
                class_id,
                noise=plan.road_noise,
                seed=index,
                batch_size=explainer.batch_size,
            )
        )
    if image_boxes:
        row.pointing.append(curves.pointing_game(full, image_boxes))


def _report(name: str, row: _Measured) -> MethodReport:
    roads = row.road
    return MethodReport(
        method=name,
        average_drop=curves.average_drop(row.clean, row.masked),
        increase=curves.increase_in_confidence(row.clean, row.masked),
        deletion=_area(row.deletion),
        insertion=_area(row.insertion),
        pointing=float(np.mean(row.pointing)) if row.pointing else None,
        seconds=float(np.mean(row.seconds)),
        forwards=float(np.mean(row.forwards)),
        deletion_curve=_mean_curve(row.deletion),
        insertion_curve=_mean_curve(row.insertion),
        road_morf=float(np.mean([r.morf for r in roads])) if roads else None,
        road_lerf=float(np.mean([r.lerf for r in roads])) if roads else None,
        road_combined=float(np.mean([r.combined for r in roads])) if roads else None,
    )


def _area(found: list) -> float | None:
    return float(np.mean([curves.area_under_curve(c) for c in found])) if found else None


def _mean_curve(found: list) -> list[float]:
    return [round(float(v), 5) for v in np.mean(found, axis=0)] if found else []


def plot_curves(evaluation: Evaluation, width: int = 480, height: int = 320) -> NDArray[np.uint8]:
    """Deletion and insertion curves side by side, one colour per method (RGB uint8)."""
    panels = []
    for title, key in (
        ("Deletion (lower is better)", "deletion_curve"),
        ("Insertion (higher is better)", "insertion_curve"),
    ):
        series = [
            plots.Series(row.method, np.linspace(0, 1, len(curve)), curve)
            for row in evaluation.rows
            if (curve := getattr(row, key))
        ]
        panels.append(plots.panel(title, series, width=width, height=height))
    return plots.side_by_side(panels)


def write_report(evaluation: Evaluation, out: Path) -> list[Path]:
    """Write report.json, report.md and curves.png into `out` (atomically)."""
    from ..fileio import write_bytes_atomic, write_text_atomic
    from ..render import encode_png

    paths = [out / "report.json", out / "report.md"]
    write_text_atomic(paths[0], json.dumps(evaluation.to_dict(), indent=2) + "\n")
    write_text_atomic(paths[1], evaluation.markdown())
    if any(r.deletion_curve or r.insertion_curve for r in evaluation.rows):
        paths.append(out / "curves.png")
        write_bytes_atomic(paths[2], encode_png(plot_curves(evaluation)))
    return paths
