"""Sanity checks for saliency maps (Adebayo et al. 2018): does a map depend on the model?

The model's parameterised layers are randomised *cascading* from the output towards the
input (step k randomises the k topmost layers of a chosen set) and *independently* (one
layer at a time), each image is explained again for the class the trained model predicted,
and each randomised map is compared with the trained model's map (Spearman's rank
correlation with and without absolute values, SSIM, HOG correlation; maps at the model's
input size). A map that stays alike after every layer is randomised does not explain the
model.
"""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..errors import ImageError
from ..explainer import Explainer
from ..fileio import write_bytes_atomic, write_text_atomic
from ..images import ImageLike
from ..methods import Method
from ..options import ExplainOptions
from ..pictures import Picture
from ..render import encode_png
from ..targets import Class
from . import plots
from .faithfulness import EvaluationPlan
from .randomise import Layer, RandomisableBundle
from .similarity import defined_mean, similarities

MEASURES = ("spearman", "spearman_abs", "ssim", "hog")
Run = tuple[str, Method, ExplainOptions]  # a row's name, its method and its options
MODES = ("cascading", "independent")
# A map whose rank correlation with the trained model's stays at or above this once every
# layer is randomised has not changed enough to say it depends on the model.
PASS_BELOW = 0.5


@dataclass(frozen=True)
class SanityPlan:
    """What `sanity` randomises and explains.

    Args:
        methods: method objects or names.
        steps: cut points over the parameterised layers, from the top layer alone to every
            layer (the last cascading step), spread geometrically. None: every layer.
        modes: "cascading", "independent" or both.
        seed: the seed of the random weights.
        options: passed to `explain`, as `evaluate` does (rows "METHOD +aug", "+eigen").
    """

    methods: Sequence[Method | str] = ("scorecam",)
    steps: int | None = 8
    modes: Sequence[str] = MODES
    seed: int = 0
    options: ExplainOptions = field(default_factory=ExplainOptions)

    def __post_init__(self) -> None:
        unknown = [m for m in self.modes if m not in MODES]
        if unknown or not self.modes:
            raise ValueError(f"modes must be among {', '.join(MODES)}, got {list(self.modes)}")
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"steps must be at least 1, got {self.steps}")


@dataclass(frozen=True)
class SanityStep:
    """One randomisation: its mode, the layers randomised, how many layers from the top
    that reaches (`depth`), and per method the mean of each similarity over the images."""

    mode: str
    layers: tuple[str, ...]
    depth: int
    similarity: dict[str, dict[str, float]]


@dataclass
class SanityReport:
    """The result of `sanity`: every step, and what it was measured on."""

    methods: list[str]
    images: list[str]
    layers: list[str]  # every parameterised layer, from the output towards the input
    steps: list[SanityStep] = field(default_factory=list)

    def final(self, method: str) -> dict[str, float]:
        """A method's similarities once every chosen layer is randomised (cascading)."""
        cascading = [s for s in self.steps if s.mode == "cascading"]
        return cascading[-1].similarity[method] if cascading else {}

    def verdicts(self) -> dict[str, str]:
        """Per method, one line: the map changes with the model (as it should), or not."""
        found = {}
        for method in self.methods:
            rank = self.final(method).get("spearman", float("nan"))
            if not self.final(method):
                found[method] = "no cascading randomisation was run"
            elif math.isnan(rank):
                found[method] = "cannot tell: a map is constant, so it has no rank correlation"
            elif rank < PASS_BELOW:
                found[method] = (
                    f"passes: the map changes once the model is randomised (rank correlation "
                    f"{_number(rank)})"
                )
            else:
                found[method] = (
                    f"fails: the map stays alike with random weights (rank correlation "
                    f"{_number(rank)}), so it does not show what the model learned"
                )
        return found

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data (NaN as null)."""
        return {
            "methods": self.methods,
            "images": self.images,
            "layers": self.layers,
            "pass_below": PASS_BELOW,
            "steps": [
                {
                    "mode": s.mode,
                    "depth": s.depth,
                    "layers": list(s.layers),
                    "similarity": {
                        m: {k: _json(v) for k, v in values.items()}
                        for m, values in s.similarity.items()
                    },
                }
                for s in self.steps
            ],
            "verdicts": self.verdicts(),
        }

    def markdown(self) -> str:
        """A table per mode (rows: steps; columns: each method's similarities) and the
        verdicts."""
        lines = [
            f"Sanity checks on {len(self.images)} image(s); {len(self.layers)} parameterised "
            "layers, randomised from the output towards the input.",
            "",
        ]
        for mode in MODES:
            steps = [s for s in self.steps if s.mode == mode]
            if not steps:
                continue
            head = ["layers randomised" if mode == "cascading" else "layer randomised"]
            head += [f"{m} {k}" for m in self.methods for k in MEASURES]
            lines += [f"### {mode}", "", "| " + " | ".join(head) + " |"]
            lines.append("|" + "---|" * len(head))
            for s in steps:
                where = f"{s.depth} (to {s.layers[-1]})" if mode == "cascading" else s.layers[0]
                cells = [_number(s.similarity[m][k]) for m in self.methods for k in MEASURES]
                lines.append(f"| {where} | " + " | ".join(cells) + " |")
            lines.append("")
        lines += [f"- `{m}`: {v}" for m, v in self.verdicts().items()]
        return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class SanityCallbacks:
    """Where `sanity` reports: a line before each step, explain progress, and images that
    cannot be read (left out; without `on_error`, the error is raised)."""

    on_step: Callable[[str], None] | None = None
    progress: Callable[[int, int], None] | None = None
    on_error: Callable[[int, ImageError], None] | None = None


def sanity(
    explainer: Explainer,
    images: Sequence[ImageLike],
    plan: SanityPlan | None = None,
    callbacks: SanityCallbacks | None = None,
) -> SanityReport:
    """Randomise the explainer's model layer by layer and measure how each method's maps
    change (see the module's description)."""
    plan, callbacks = plan or SanityPlan(), callbacks or SanityCallbacks()
    if explainer.forwards.detector or explainer.bundle.manifest.output.segmentation:
        raise ValueError(
            "the sanity checks explain classifiers' classes, not detections or regions"
        )
    runs = EvaluationPlan(plan.methods, (), options=plan.options).runs()
    model = RandomisableBundle(explainer.bundle, plan.seed)
    pictures, names = _pictures(explainer, images, callbacks, plan.options.frame)
    classes = [explainer.chosen_classes(p)[0][0] for p in pictures]  # the top-1 class
    original = _maps(explainer, pictures, classes, runs, callbacks.progress)
    chosen = _cut_points(len(model.layers), plan.steps)
    report = SanityReport(
        [label for label, _, _ in runs],
        names,
        [layer.name for layer in model.layers],
    )
    for mode in plan.modes:
        for depth in chosen:
            layers = model.layers[:depth] if mode == "cascading" else [model.layers[depth - 1]]
            if callbacks.on_step is not None:
                callbacks.on_step(f"{mode}: {layers[-1].name} ({depth}/{len(model.layers)})")
            maps = _randomised_maps(explainer, model, layers, pictures, classes, runs, callbacks)
            report.steps.append(
                SanityStep(
                    mode,
                    tuple(layer.name for layer in layers),
                    depth,
                    _compared(original, maps, report.methods),
                )
            )
    return report


def _pictures(
    explainer: Explainer, images: Sequence[ImageLike], callbacks: SanityCallbacks, frame: int
) -> tuple[list[Picture], list[str]]:
    pictures, names = [], []
    for index, image in enumerate(images):
        try:
            pictures.append(explainer.read(image, frame))
        except ImageError as exc:
            if callbacks.on_error is None:
                raise
            callbacks.on_error(index, exc)
            continue
        names.append(str(image) if isinstance(image, str | Path) else f"image {index + 1}")
    if not pictures:
        raise ValueError("no image could be read; nothing to check")
    return pictures, names


def plot_sanity(report: SanityReport, measure: str = "spearman") -> NDArray[np.uint8]:
    """`measure` against the layers randomised, one colour per method: cascading, then
    independent (RGB uint8)."""
    panels = []
    for mode in (m for m in MODES if any(s.mode == m for s in report.steps)):
        steps = [s for s in report.steps if s.mode == mode]
        series = [
            plots.Series(
                method, [s.depth for s in steps], [s.similarity[method][measure] for s in steps]
            )
            for method in report.methods
        ]
        title = f"{mode}: {measure} by layers from the top"
        panels.append(plots.panel(title, series, (1, max(len(report.layers), 2)), (-1.0, 1.0)))
    return plots.side_by_side(panels)


def write_sanity(report: SanityReport, out: Path) -> list[Path]:
    """Write sanity.json, sanity.md and sanity.png into `out` (atomically)."""
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "sanity.json", out / "sanity.md", out / "sanity.png"]
    write_text_atomic(paths[0], json.dumps(report.to_dict(), indent=2) + "\n")
    write_text_atomic(paths[1], report.markdown())
    write_bytes_atomic(paths[2], encode_png(plot_sanity(report)))
    return paths


def _cut_points(count: int, steps: int | None) -> list[int]:
    """How many layers from the top each step reaches: from the top layer alone to every
    layer, `steps` cut points spread geometrically (maps change most near the output)."""
    if steps is None or steps >= count:
        return list(range(1, count + 1))
    if steps == 1:
        return [count]
    found = [round(float(v)) for v in np.geomspace(1, count, steps)]
    for i in range(1, steps):  # distinct: each at least one deeper than the last ...
        found[i] = max(found[i], found[i - 1] + 1)
    for i in range(steps - 2, -1, -1):  # ... and room left for the ones after it
        found[i] = min(found[i], found[i + 1] - 1)
    return found


def _maps(
    explainer: Explainer,
    pictures: list[Picture],
    classes: list[int],
    runs: list[Run],
    progress: Callable[[int, int], None] | None,
) -> dict[str, list[NDArray[np.float32]]]:
    """Per method, each image's map (at the model's input size) for its class."""
    return {
        label: [
            explainer.explain(picture, Class(class_id), method, options, progress)[0].saliency_input
            for picture, class_id in zip(pictures, classes, strict=True)
        ]
        for label, method, options in runs
    }


def _randomised_maps(
    explainer: Explainer,
    model: RandomisableBundle,
    layers: Sequence[Layer],
    pictures: list[Picture],
    classes: list[int],
    runs: list[Run],
    callbacks: SanityCallbacks,
) -> dict[str, list[NDArray[np.float32]]]:
    with tempfile.TemporaryDirectory(prefix="scorecam-sanity-") as folder:
        bundle = model.write(layers, Path(folder) / "bundle")
        randomised = Explainer(bundle, explainer.runtime)
        return _maps(randomised, pictures, classes, runs, callbacks.progress)


def _compared(
    original: dict[str, list[NDArray[np.float32]]],
    maps: dict[str, list[NDArray[np.float32]]],
    methods: list[str],
) -> dict[str, dict[str, float]]:
    found = {}
    for method in methods:
        values = [similarities(a, b) for a, b in zip(original[method], maps[method], strict=True)]
        found[method] = {k: defined_mean([v[k] for v in values]) for k in MEASURES}
    return found


def _number(value: float) -> str:
    return "–" if math.isnan(value) else f"{value:.3f}"


def _json(value: float) -> float | None:
    return None if math.isnan(value) else round(value, 6)
