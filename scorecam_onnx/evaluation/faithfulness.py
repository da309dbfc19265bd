"""Compare explanation methods on a set of images with the paper's faithfulness metrics."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
from numpy.typing import NDArray

from .. import metrics as curves
from ..cam.interp import Resizer
from ..cam.methods import make_method
from ..errors import ImageError
from ..explainer import Explainer
from ..images import ImageLike, to_original
from ..metrics import DEFAULT_METRICS, METRICS
from . import road

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
        return {"images": self.images, "step_fraction": self.step_fraction,
                "metrics": list(self.metrics), "methods": [asdict(r) for r in self.rows]}

    def markdown(self) -> str:
        """The table in the shape of the paper's tables, with the metrics asked for."""
        columns = [(name, head, form) for name, head, form in _COLUMNS
                   if name.removesuffix("-morf").removesuffix("-lerf").removesuffix("-combined")
                   in self.metrics]
        if any(r.pointing is not None for r in self.rows):
            columns.append(("pointing", "Pointing ↑", "pct"))
        head = ["method", *(h for _, h, _ in columns), "s / image", "forwards / image"]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for r in self.rows:
            cells = [r.method]
            for name, _, form in columns:
                value = getattr(r, name.replace("-", "_"))
                cells.append("-" if value is None else f"{value * 100:.1f}" if form == "pct"
                             else format(value, form))
            cells += [f"{r.seconds:.2f}", f"{r.forwards:.0f}"]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines) + "\n"


# (metric, column head, format) of the report's table; ROAD adds three columns.
_COLUMNS = [("average-drop", "Average Drop ↓", ".1f"), ("increase", "Increase ↑", ".1f"),
            ("deletion", "Deletion ↓", ".3f"), ("insertion", "Insertion ↑", ".3f"),
            ("road-morf", "ROAD MoRF ↓", ".4f"), ("road-lerf", "ROAD LeRF ↑", ".4f"),
            ("road-combined", "ROAD combined ↑", ".4f")]


def baseline_map(name: str, size: tuple[int, int], grid: tuple[int, int] = (7, 7),
                 seed: int = 0) -> NDArray[np.float32]:
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


def evaluate(
    explainer: Explainer,
    images: Sequence[ImageLike],
    methods: Sequence[str],
    baselines: Sequence[str] = BASELINES,
    boxes: Sequence[Sequence[Sequence[float]] | None] | None = None,
    step_fraction: float = 0.01,
    channels: int = 64,
    samples: int | None = None,
    on_step: Callable[[str], None] | None = None,
    progress: Callable[[int, int], None] | None = None,
    on_error: Callable[[int, ImageError], None] | None = None,
    metrics: Sequence[str] = DEFAULT_METRICS,
    road_noise: float = road.NOISE,
    aug_smooth: bool = False,
    eigen_smooth: bool = False,
    fuse: str | None = None,
) -> Evaluation:
    """Explain each image's top-1 class with every method and score the maps.

    Args:
        explainer: the bundle's explainer (its session also scores the perturbed images).
        images: paths, bytes or RGB arrays.
        methods: method names (see `METHODS`).
        baselines: sanity maps to score beside them.
        boxes: per image, the object's boxes (x0, y0, x1, y1) in original pixels, or None.
        step_fraction: share of pixels per deletion/insertion step. Default: 1 %.
        channels, samples: passed to faster-scorecam, sscam and iscam.
        on_step: called with a short description before each method on each image.
        progress: passed to `explain` (masked inputs done, total).
        on_error: called with (index, error) for an image that cannot be read, which is then
            left out; without it, the error is raised.
        metrics: among `METRICS`; Average Drop and Increase are always measured (one
            forward), the others only when named. "road" needs SciPy (extra ``metrics``).
        road_noise: the imputation noise of ROAD (seeded per image).
        aug_smooth, eigen_smooth: passed to `explain` (eigen smoothing only for methods
            that weigh activations); the rows are named "METHOD +aug", "METHOD +eigen".
        fuse: how a multi-layer bundle's maps are fused (see `explain`).
    """
    if not images:
        raise ValueError("no images to evaluate")
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise ValueError(f"unknown metric {', '.join(unknown)}: choose from "
                         f"{', '.join(METRICS)}")
    if "road" in metrics:
        road.import_scipy()
    smoothing = {name: {"aug_smooth": aug_smooth,
                        "eigen_smooth": eigen_smooth and make_method(name).weighs_activations,
                        "fuse": fuse}
                 for name in methods}
    labels_of = {name: name + " +aug" * aug_smooth
                 + " +eigen" * smoothing[name]["eigen_smooth"] for name in methods}
    names = [*methods, *baselines]
    sums: dict[str, dict[str, list]] = {n: {k: [] for k in (
        "y", "o", "del", "ins", "point", "sec", "fwd", "road")} for n in names}
    evaluated: list[int] = []
    for index, image in enumerate(images):
        try:
            rgb, x = explainer.preprocess(image)
        except ImageError as exc:
            if on_error is None:
                raise
            on_error(index, exc)
            continue
        evaluated.append(index)
        p = explainer.probabilities(x)[0]
        class_id = int(np.argmax(p))
        image_boxes = boxes[index] if boxes is not None else None
        for name in names:
            if on_step is not None:
                on_step(f"image {index + 1}/{len(images)}: {name}")
            started = time.perf_counter()
            if name in baselines:
                act = explainer.bundle.manifest.activation
                grid = (act.height, act.width) if act else (7, 7)
                small = baseline_map(name, x.shape[2:], grid, seed=index)
                full = to_original(small, rgb.shape, explainer.bundle.manifest.input)
                forwards = 0
            else:
                res = explainer.explain(rgb, class_id, method=name, channels=channels,
                                        samples=samples, progress=progress, **smoothing[name])
                small, full, forwards = res.saliency_input, res.saliency, res.forwards
            seconds = time.perf_counter() - started
            row = sums[name]
            row["y"].append(p[class_id])
            row["o"].append(explainer.probabilities(x * small[None, None])[0, class_id])
            for mode, key in (("deletion", "del"), ("insertion", "ins")):
                if mode in metrics:
                    row[key].append(curves.causal_curve(explainer.probabilities, x, small,
                                                        class_id, mode, step_fraction,
                                                        explainer.batch_size))
            if "road" in metrics:
                row["road"].append(road.road(explainer.probabilities, x, small, class_id,
                                             noise=road_noise, seed=index,
                                             batch_size=explainer.batch_size))
            if image_boxes:
                row["point"].append(curves.pointing_game(full, image_boxes))
            row["sec"].append(seconds)
            row["fwd"].append(forwards)
    if not evaluated:
        raise ValueError("no image could be read; nothing to evaluate")
    rows = []
    for name in names:
        row = sums[name]
        roads = row["road"]
        rows.append(MethodReport(
            method=labels_of.get(name, name),
            average_drop=curves.average_drop(row["y"], row["o"]),
            increase=curves.increase_in_confidence(row["y"], row["o"]),
            deletion=_area(row["del"]),
            insertion=_area(row["ins"]),
            pointing=float(np.mean(row["point"])) if row["point"] else None,
            seconds=float(np.mean(row["sec"])),
            forwards=float(np.mean(row["fwd"])),
            deletion_curve=_mean_curve(row["del"]),
            insertion_curve=_mean_curve(row["ins"]),
            road_morf=float(np.mean([r.morf for r in roads])) if roads else None,
            road_lerf=float(np.mean([r.lerf for r in roads])) if roads else None,
            road_combined=float(np.mean([r.combined for r in roads])) if roads else None,
        ))
    labels = [str(images[n]) if isinstance(images[n], str | Path) else f"image {n + 1}"
              for n in evaluated]
    return Evaluation(rows, labels, step_fraction, tuple(metrics))


def _area(found: list) -> float | None:
    return float(np.mean([curves.area_under_curve(c) for c in found])) if found else None


def _mean_curve(found: list) -> list[float]:
    return [round(float(v), 5) for v in np.mean(found, axis=0)] if found else []


_COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
            (140, 86, 75), (127, 127, 127), (23, 190, 207), (188, 189, 34)]


def plot_curves(evaluation: Evaluation, width: int = 480, height: int = 320) -> NDArray[np.uint8]:
    """Deletion and insertion curves side by side, one colour per method (RGB uint8)."""
    panels = []
    for title, key in (("Deletion (lower is better)", "deletion_curve"),
                       ("Insertion (higher is better)", "insertion_curve")):
        panel = np.full((height, width, 3), 255, np.uint8)
        left, right, top, bottom = 50, width - 15, 30, height - 80
        cv2.rectangle(panel, (left, top), (right, bottom), (0, 0, 0), 1)
        cv2.putText(panel, title, (left, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1,
                    cv2.LINE_AA)
        for tick in (0.0, 0.5, 1.0):
            y = int(bottom - tick * (bottom - top))
            cv2.putText(panel, f"{tick:.1f}", (12, y + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.4,
                        (0, 0, 0), 1, cv2.LINE_AA)
        for i, row in enumerate(evaluation.rows):
            curve = np.asarray(getattr(row, key))
            if curve.size == 0:
                continue
            colour = _COLOURS[i % len(_COLOURS)]
            xs = left + np.linspace(0, 1, curve.size) * (right - left)
            ys = bottom - np.clip(curve, 0, 1) * (bottom - top)
            points = np.stack([xs, ys], axis=1).round().astype(np.int32)
            cv2.polylines(panel, [points], False, colour, 2, cv2.LINE_AA)
            lx, ly = left + (i % 3) * 140, bottom + 30 + (i // 3) * 22
            cv2.line(panel, (lx, ly - 4), (lx + 20, ly - 4), colour, 3)
            cv2.putText(panel, row.method, (lx + 25, ly), cv2.FONT_HERSHEY_SIMPLEX, 0.45,
                        (0, 0, 0), 1, cv2.LINE_AA)
        panels.append(panel)
    return np.concatenate(panels, axis=1)


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
