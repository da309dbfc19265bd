"""Several methods side by side on the same images: their overlays, what each cost, how
faithful each measured (the numbers of `evaluate`, from the same run), and how closely the
cheaper relatives of Score-CAM follow the exact one."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from ..explainer import Explainer, Explanation
from ..images import ImageLike
from ..render import fitted, labelled_row, overlay, stacked
from .faithfulness import Evaluation, EvaluationCallbacks, EvaluationPlan, evaluate
from .similarity import defined_mean, pearson

EXACT = "scorecam"


@dataclass
class ComparedImage:
    """One image: its name, the class explained, and a row of pictures (the photo, then each
    method's overlay, captioned) at the report's height."""

    name: str
    class_id: int
    label: str
    score: float
    row: NDArray[np.uint8]


@dataclass
class Comparison:
    """The result of `compare`: `evaluate`'s report, the images' rows of overlays, and each
    method's mean correlation with exact Score-CAM's map (when it was among the methods)."""

    evaluation: Evaluation
    images: list[ComparedImage] = field(default_factory=list)
    correlations: dict[str, float] = field(default_factory=dict)

    def sheet(self) -> NDArray[np.uint8]:
        """Every image's row, one under the other."""
        return stacked([image.row for image in self.images])


class _Collector:
    """Builds each image's row and keeps the maps the correlations need."""

    def __init__(self, methods: list[str], exact: str | None, height: int) -> None:
        self.methods, self.exact, self.height = methods, exact, height
        self.tiles: dict[int, list[tuple[NDArray[np.uint8], str]]] = {}
        self.first: dict[int, Explanation] = {}
        self.maps: dict[str, list[NDArray[np.float32]]] = {m: [] for m in methods}

    def __call__(self, index: int, name: str, rgb: NDArray[np.uint8], res: Explanation) -> None:
        photo, small = fitted(rgb, res.saliency, self.height)
        tiles = self.tiles.setdefault(index, [(photo, "photo")])
        tiles.append((overlay(photo, small), name))
        self.first.setdefault(index, res)
        self.maps[name].append(res.saliency_input)

    def images(self, names: list[str]) -> list[ComparedImage]:
        return [
            ComparedImage(
                names[index],
                self.first[index].class_id,
                self.first[index].label,
                self.first[index].score,
                labelled_row(self.tiles[index]),
            )
            for index in sorted(self.tiles)
        ]

    def correlations(self) -> dict[str, float]:
        if self.exact is None:
            return {}
        exact = self.maps[self.exact]
        return {
            name: defined_mean([pearson(a, b) for a, b in zip(maps, exact, strict=True)])
            for name, maps in self.maps.items()
            if name != self.exact
        }


def compare(
    explainer: Explainer,
    images: Sequence[ImageLike],
    plan: EvaluationPlan | None = None,
    callbacks: EvaluationCallbacks | None = None,
    height: int = 224,
) -> Comparison:
    """Explain each image's top-1 class with every method of `plan`, measure each map as
    `evaluate` does, and keep the overlays (`height` pixels high) for the report."""
    plan = plan or EvaluationPlan(("scorecam", "faster-scorecam", "reciprocam"), baselines=())
    callbacks = callbacks or EvaluationCallbacks()
    runs = plan.runs()
    exact = next((label for label, method, _ in runs if method.name == EXACT), None)
    collector = _Collector([label for label, _, _ in runs], exact, height)
    report = evaluate(
        explainer,
        images,
        plan,
        callbacks=EvaluationCallbacks(
            callbacks.on_step, callbacks.progress, callbacks.on_error, collector
        ),
    )
    names = [_name(image, n) for n, image in enumerate(images)]
    return Comparison(report, collector.images(names), collector.correlations())


def _name(image: ImageLike, index: int) -> str:
    return str(image) if isinstance(image, str | Path) else f"image {index + 1}"
